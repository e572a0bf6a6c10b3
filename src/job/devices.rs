//! What a run can use here: the CPU engine and the GPU adapters, best first (`impasto
//! devices` prints it; Python's `impasto.devices()` returns it).

/// One engine a run can choose: the CPU engine, or a GPU adapter with the limits that matter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Device {
    /// "cpu" or "gpu".
    pub engine: &'static str,
    /// The index `--adapter` takes (GPU adapters only; 0 is the default one).
    pub index: Option<usize>,
    pub name: String,
    /// Vulkan, Metal, Dx12 (GPU adapters only).
    pub backend: Option<String>,
    /// DiscreteGpu, IntegratedGpu, Cpu (a software driver), ... (GPU adapters only).
    pub device_type: Option<String>,
    pub max_storage_binding_bytes: Option<u64>,
    pub max_buffer_bytes: Option<u64>,
    pub workgroup_storage_bytes: Option<u64>,
    pub invocations_per_workgroup: Option<u64>,
    pub timestamps: Option<bool>,
    /// The tensor-core shapes WGSL can reach (cooperative matrices), e.g. "16x16x16
    /// f16·f16+f32" (GPU adapters only; empty where none are offered).
    pub cooperative_matrices: Option<Vec<String>>,
    /// The variant `--precision mixed` runs on them untuned (`coop16-64x64`, `coop8-32x32`), or None where it
    /// computes in f32 (GPU adapters; None for the CPU engine too).
    pub mixed_variant: Option<String>,
}

/// The CPU engine first, then the GPU adapters best first (the first is the default).
pub fn devices() -> Vec<Device> {
    let cpu = Device {
        engine: "cpu",
        index: None,
        name: crate::cpu::describe(),
        backend: None,
        device_type: None,
        max_storage_binding_bytes: None,
        max_buffer_bytes: None,
        workgroup_storage_bytes: None,
        invocations_per_workgroup: None,
        timestamps: None,
        cooperative_matrices: None,
        mixed_variant: None,
    };
    let adapters = crate::gpu::list_adapters().into_iter().enumerate();
    let gpus = adapters.map(|(i, a)| Device {
        engine: "gpu",
        index: Some(i),
        name: a.info.name.clone(),
        backend: Some(format!("{:?}", a.info.backend)),
        device_type: Some(format!("{:?}", a.info.device_type)),
        max_storage_binding_bytes: Some(a.limits.max_storage_buffer_binding_size),
        max_buffer_bytes: Some(a.limits.max_buffer_size),
        workgroup_storage_bytes: Some(a.limits.max_compute_workgroup_storage_size as u64),
        invocations_per_workgroup: Some(a.limits.max_compute_invocations_per_workgroup as u64),
        timestamps: Some(a.features.contains(wgpu::Features::TIMESTAMP_QUERY)),
        cooperative_matrices: Some(a.cooperative_matrices.iter().map(shape).collect()),
        mixed_variant: (crate::kernels::MIXED_TILINGS.into_iter())
            .find(|&t| {
                let coop = &a.cooperative_matrices;
                crate::kernels::setup::not_offered_by(&a.info, a.features, coop, t).is_none()
            })
            .map(|t| t.to_string()),
    });
    std::iter::once(cpu).chain(gpus).collect()
}

/// A cooperative-matrix configuration as M x N x K and the types: "16x16x16 f16·f16+f32".
fn shape(c: &wgpu::CooperativeMatrixProperties) -> String {
    let t = |t: wgpu::CooperativeScalarType| format!("{t:?}").to_lowercase();
    format!(
        "{}x{}x{} {}·{}+{}",
        c.m_size,
        c.n_size,
        c.k_size,
        t(c.ab_type),
        t(c.ab_type),
        t(c.cr_type)
    )
}
