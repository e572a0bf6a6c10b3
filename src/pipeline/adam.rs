//! Adam on the image buffer, entirely on the GPU (the step count included).

use anyhow::Result;

use crate::gpu::Dispatch;
use crate::gpu::Gpu;
use crate::kernels::adam::{AdamBuffers, AdamParams};
use crate::kernels::Kernels;
use crate::model::AdamConfig;

pub struct Adam {
    pub dispatches: [Dispatch; 2],
    _moments: [wgpu::Buffer; 3],
}

impl Adam {
    pub fn new(
        gpu: &Gpu, kernels: &Kernels, config: &AdamConfig, x: &wgpu::Buffer, grad: &wgpu::Buffer,
        len: usize,
    ) -> Result<Adam> {
        let m = gpu.storage("adam m", len)?;
        let v = gpu.storage("adam v", len)?;
        let state = gpu.storage("adam state", 4)?;
        let params = AdamParams::new(config, len);
        let dispatches = kernels.adam.step(
            gpu,
            params,
            AdamBuffers {
                grad,
                x,
                m: &m,
                v: &v,
                state: &state,
            },
        );
        Ok(Adam {
            dispatches,
            _moments: [m, v, state],
        })
    }
}
