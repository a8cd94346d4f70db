//! Which backend a command runs on: `--backend cpu | cuda[:N] | plugin:PATH`.
//!
//! One parser for `generate`, `serve` and `bench`, so every command accepts the same names and
//! gives the same errors.
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BackendChoice {
    #[default]
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
    /// A shared library exporting `candor_device_get_api`.
    Plugin(PathBuf),
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => {
                if let Some(ordinal) = s.strip_prefix("cuda:") {
                    return ordinal.parse().map(Self::Cuda).map_err(|_| {
                        format!("`{s}`: a CUDA device is `cuda` or `cuda:N` with N a number")
                    });
                }
                if let Some(path) = s.strip_prefix("plugin:") {
                    if path.is_empty() {
                        return Err("`plugin:` needs the path of a shared library".into());
                    }
                    return Ok(Self::Plugin(PathBuf::from(path)));
                }
                Err(format!(
                    "unknown backend `{s}` (expected cpu, cuda, cuda:N or plugin:PATH)"
                ))
            }
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Plugin(p) => write!(f, "plugin:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("cpu".parse(), Ok(BackendChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(BackendChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(BackendChoice::Cuda(3)));
        assert_eq!(
            "plugin:/x/libp.so".parse(),
            Ok(BackendChoice::Plugin("/x/libp.so".into()))
        );
        assert!("cuda:x".parse::<BackendChoice>().is_err());
        assert!("plugin:".parse::<BackendChoice>().is_err());
        assert!("tpu"
            .parse::<BackendChoice>()
            .unwrap_err()
            .contains("unknown backend"));
    }

    #[test]
    fn display_round_trips() {
        for s in ["cpu", "cuda:1", "plugin:lib.so"] {
            assert_eq!(s.parse::<BackendChoice>().unwrap().to_string(), s);
        }
    }
}
