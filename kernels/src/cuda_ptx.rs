//! candor's CUDA kernels (kernels/cuda/*.cu), compiled by build.rs for several architectures
//! as PTX and as machine code (cubins), and the choice of what a device loads.

/// One kernels/cuda/*.cu file: its PTX and its cubin per target architecture (compute
/// capability × 10).
#[derive(Debug)]
pub struct PtxModule {
    pub name: &'static str,
    pub per_arch: &'static [(u32, &'static str)],
    pub cubins: &'static [(u32, &'static [u8])],
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

/// The cubin a device of compute capability `major.minor` runs as it is: machine code runs on
/// its own major version at the same or a later minor one (sm_80 code on an A100 and on 8.6 or
/// 8.9 GPUs, sm_90 code on an H100/H200); the highest such. None: the device loads PTX.
pub fn pick_cubin(
    cubins: &[(u32, &'static [u8])],
    major: u32,
    minor: u32,
) -> Option<(u32, &'static [u8])> {
    cubins
        .iter()
        .filter(|(arch, _)| arch / 10 == major && arch % 10 <= minor)
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

    #[test]
    fn cubins_run_on_their_own_major_version_only() {
        const CUBINS: [(u32, &[u8]); 2] = [(80, b"ampere"), (90, b"hopper")];
        let arch = |major, minor| pick_cubin(&CUBINS, major, minor).map(|(a, _)| a);
        assert_eq!(arch(8, 0), Some(80), "A100");
        assert_eq!(arch(8, 9), Some(80), "Ada runs Ampere machine code");
        assert_eq!(arch(9, 0), Some(90), "H100, H200");
        assert_eq!(arch(10, 0), None, "Blackwell: PTX");
        assert_eq!(arch(12, 0), None);
        assert_eq!(arch(7, 5), None);
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn every_kernel_file_is_embedded_for_every_architecture() {
        let names: Vec<&str> = MODULES.iter().map(|m| m.name).collect();
        for want in [
            "argmax",
            "fill",
            "glu",
            "kv_write",
            "matvec",
            "paged_attention",
            "paged_attention_mma",
            "rms_norm",
            "rope",
            "rope_kv_write",
            "short_conv",
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
            let archs: Vec<u32> = m.cubins.iter().map(|(a, _)| *a).collect();
            assert_eq!(archs, vec![80, 90], "{} cubins", m.name);
            for (arch, cubin) in m.cubins {
                // An ELF object, 64-bit little-endian, of NVIDIA's CUDA machine type (190).
                assert_eq!(&cubin[..6], b"\x7fELF\x02\x01", "{} sm_{arch}", m.name);
                assert_eq!(
                    u16::from_le_bytes([cubin[18], cubin[19]]),
                    190,
                    "{}",
                    m.name
                );
            }
        }
    }
}
