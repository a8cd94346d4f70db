//! The PTX of candor's CUDA kernels (kernels/cuda/*.cu), compiled by build.rs for several
//! architectures, and the choice of the one a device runs.

/// One kernels/cuda/*.cu file: its PTX per target architecture (compute capability × 10).
#[derive(Debug)]
pub struct PtxModule {
    pub name: &'static str,
    pub per_arch: &'static [(u32, &'static str)],
}

#[cfg(feature = "cuda")]
include!(concat!(env!("OUT_DIR"), "/cuda_ptx.rs"));

/// The PTX to load on a device of compute capability `major.minor`: the highest architecture
/// compiled for that the device can run (PTX is forward compatible: sm_90 PTX is JIT-compiled
/// for newer GPUs). None when the device is older than every compiled architecture.
pub fn pick_arch(
    per_arch: &[(u32, &'static str)],
    major: u32,
    minor: u32,
) -> Option<(u32, &'static str)> {
    let device = major * 10 + minor;
    per_arch
        .iter()
        .filter(|(arch, _)| *arch <= device)
        .max_by_key(|(arch, _)| *arch)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILT: [(u32, &str); 2] = [(80, "ampere"), (90, "hopper")];

    #[test]
    fn picks_the_highest_architecture_the_device_runs() {
        assert_eq!(pick_arch(&BUILT, 9, 0), Some((90, "hopper")));
        assert_eq!(
            pick_arch(&BUILT, 8, 9),
            Some((80, "ampere")),
            "Ada runs Ampere PTX"
        );
        assert_eq!(pick_arch(&BUILT, 8, 0), Some((80, "ampere")));
        assert_eq!(
            pick_arch(&BUILT, 12, 0),
            Some((90, "hopper")),
            "Blackwell JITs Hopper PTX"
        );
        assert_eq!(
            pick_arch(&BUILT, 7, 5),
            None,
            "Turing is older than every build"
        );
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn every_kernel_file_is_embedded_for_every_architecture() {
        let names: Vec<&str> = MODULES.iter().map(|m| m.name).collect();
        for want in [
            "fill",
            "glu",
            "kv_write",
            "paged_attention",
            "rms_norm",
            "rope",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        for m in MODULES {
            let archs: Vec<u32> = m.per_arch.iter().map(|(a, _)| *a).collect();
            assert_eq!(archs, vec![80, 90], "{}", m.name);
            for (arch, ptx) in m.per_arch {
                assert!(
                    ptx.contains(&format!(".target sm_{arch}")),
                    "{} sm_{arch}",
                    m.name
                );
                assert!(ptx.contains(".visible .entry"), "{} has no kernel", m.name);
            }
        }
    }
}
