//! Choosing the compute device at run time: `cpu` (burn's flex backend), `cuda[:i]`, `wgpu`.

use burn::tensor::Device;

/// Parses a device name. `cuda` and `wgpu` need the cargo features of the same name.
pub fn parse_device(name: &str) -> Result<Device, String> {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "cuda")]
        n if n == "cuda" || n.starts_with("cuda:") => {
            let index = n.strip_prefix("cuda:").map_or(Ok(0), |i| i.parse::<usize>().map_err(|_| format!("bad CUDA index in {n:?}")))?;
            Ok(Device::cuda(index))
        }
        n if n == "wgpu" || n.starts_with("cuda") => {
            Err(format!("device {n:?} needs selfemo built with `--features {}`", if n == "wgpu" { "wgpu" } else { "cuda" }))
        }
        other => Err(format!("unknown device {other:?}: expected cpu, cuda[:index] or wgpu")),
    }
}
