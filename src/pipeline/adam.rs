//! Adam on the image buffer, entirely on the GPU (the step count included).

use anyhow::Result;

use crate::gpu::Dispatch;
use crate::gpu::Gpu;
use crate::kernels::adam::{AdamBuffers, AdamParams};
use crate::kernels::Kernels;
use crate::model::{AdamConfig, AdamState};

pub struct Adam {
    pub dispatches: Vec<Dispatch>,
    pub m: wgpu::Buffer,
    pub v: wgpu::Buffer,
    /// [t, 1 − β1^t, 1 − β2^t, unused]
    pub state: wgpu::Buffer,
    config: AdamConfig,
}

impl Adam {
    pub fn new(
        gpu: &Gpu, kernels: &Kernels, config: &AdamConfig, x: &wgpu::Buffer, grad: &wgpu::Buffer,
        grad_scale: &wgpu::Buffer, len: usize,
    ) -> Result<Adam> {
        // Bound by ranges: as large as the image (a tiled one may be past the binding limit).
        let m = gpu.map_storage("adam m", 4 * len)?;
        let v = gpu.map_storage("adam v", 4 * len)?;
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
                grad_scale,
            },
        );
        Ok(Adam {
            dispatches,
            m,
            v,
            state,
            config: *config,
        })
    }

    /// The moments and step count (read back).
    pub fn read(&self, gpu: &Gpu, len: usize) -> Result<AdamState> {
        Ok(AdamState {
            m: gpu.read(&self.m, len)?,
            v: gpu.read(&self.v, len)?,
            t: gpu.read(&self.state, 1)?[0] as usize,
        })
    }

    /// Replaces the moments and step count.
    pub fn write(&self, gpu: &Gpu, s: &AdamState) {
        gpu.write(&self.m, &s.m);
        gpu.write(&self.v, &s.v);
        let t = s.t as i32;
        let c = &self.config;
        let state = [
            s.t as f32,
            (1.0 - c.beta1.powi(t)) as f32,
            (1.0 - c.beta2.powi(t)) as f32,
            0.0,
        ];
        gpu.write(&self.state, &state);
    }
}
