//! The GPU layer: the device and its limits ([`Gpu`]), and the few types every kernel is
//! launched through ([`Kernel`], [`Dispatch`], [`submit`]). Knows nothing of style transfer.

mod context;
mod kernel;
pub mod validation;

pub use context::{list_adapters, AdapterSummary, Gpu, MemoryUse, ADAPTER_ENV, SUBMIT_BUDGET};
pub use kernel::{
    bindings_in, specialise, submit, submit_groups, Access, Binding, Bound, Dispatch, Kernel,
};
