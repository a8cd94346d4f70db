//! Accuracy beside speed: the perplexities runs recorded (`candor bench --perplexity FILE`) and
//! those measured alone (`candor perplexity`, of a model file or of a server), grouped where
//! they are comparable (same model, same text, same chunking), and what they say about whether
//! the devices and engines compute the same model.
use super::analysis::Analysis;
use super::input::PerplexityRun;
use super::markdown::{pct, table};
use std::fmt::Write;

/// Devices that compute the same model differ by rounding only, under this relative gap. On one
/// CPU, candor and llama.cpp (both with int8 activations) differ by 0.04% (Qwen2.5 0.5B) and 0.2%
/// (Gemma 3 270M) over 3060 scored tokens; candor's int8-activation path and its f32 one by 0.3%
/// and 0.55% there (the same most likely token at 97.9% and 94.5% of positions), and by 1.4% for
/// gemma over only 126 tokens. A wrong kernel costs far more.
pub const PARITY_GAP: f64 = 0.02;

/// One measured perplexity and what measured it.
pub struct Entry<'a> {
    pub system: &'a str,
    pub model: &'a str,
    pub quantization: Option<&'a str>,
    pub software: &'a str,
    pub ppl: &'a PerplexityRun,
}

/// Runs of one model on one text with one chunking, in the order of the report's systems, then
/// of the perplexities measured alone; the first is the one the others are compared with.
pub struct Group<'a> {
    pub runs: Vec<Entry<'a>>,
}

/// Two runs position by position over the scored tokens both kept: how often they pick the same
/// most likely token, and the mean absolute difference of the text tokens' logprobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    pub positions: usize,
    pub same_top1: f64,
    pub mean_abs_logprob_diff: f64,
}

pub fn agreement(a: &PerplexityRun, b: &PerplexityRun) -> Option<Agreement> {
    let n = a.top1_ids.len().min(b.top1_ids.len());
    let m = a.logprobs.len().min(b.logprobs.len());
    if n == 0 || m == 0 {
        return None;
    }
    let same = (0..n).filter(|&i| a.top1_ids[i] == b.top1_ids[i]).count();
    let diff: f64 = (0..m)
        .map(|i| (a.logprobs[i] as f64 - b.logprobs[i] as f64).abs())
        .sum();
    Some(Agreement {
        positions: n,
        same_top1: same as f64 / n as f64,
        mean_abs_logprob_diff: diff / m as f64,
    })
}

impl Group<'_> {
    pub fn model(&self) -> &str {
        self.runs[0].model
    }

    pub fn first(&self) -> &PerplexityRun {
        self.runs[0].ppl
    }

    /// Whether `p`, a perplexity of a run of `model`, compares with the group's.
    fn takes(&self, model: &str, p: &PerplexityRun) -> bool {
        let first = self.first();
        self.model() == model
            && first.file_sha256 == p.file_sha256
            && first.ctx == p.ctx
            && first.chunks == p.chunks
    }

    /// The lowest share of positions where a run picks the first run's token, if the runs
    /// kept their picks.
    pub fn worst_agreement(&self) -> Option<Agreement> {
        let first = self.first();
        self.runs[1..]
            .iter()
            .filter_map(|e| agreement(first, e.ppl))
            .min_by(|x, y| x.same_top1.total_cmp(&y.same_top1))
    }

    /// (largest - smallest) / smallest perplexity over the group's runs.
    pub fn gap(&self) -> f64 {
        let ppl = self.runs.iter().map(|e| e.ppl.ppl);
        let (lo, hi) = ppl.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
        (hi - lo) / lo
    }
}

pub fn groups<'a>(a: &'a Analysis) -> Vec<Group<'a>> {
    let of_runs = a.systems.iter().flat_map(|s| {
        s.runs.iter().filter_map(|r| {
            r.run.perplexity.as_ref().map(|p| Entry {
                system: s.label.as_str(),
                model: r.run.model.key.as_str(),
                quantization: r.run.model.quantization.as_deref(),
                software: r.run.software.as_str(),
                ppl: p,
            })
        })
    });
    let alone = a.perplexities.iter().map(|d| Entry {
        system: d.system.as_str(),
        model: d.model_key.as_str(),
        quantization: d.quantization.as_deref(),
        software: d.software.as_str(),
        ppl: &d.run,
    });
    let mut out: Vec<Group<'a>> = Vec::new();
    for entry in of_runs.chain(alone) {
        match out.iter_mut().find(|g| g.takes(entry.model, entry.ppl)) {
            Some(g) => g.runs.push(entry),
            None => out.push(Group { runs: vec![entry] }),
        }
    }
    out
}

/// The report's word on the "Accuracy parity" item of a claim's method checklist.
pub fn verdict(a: &Analysis) -> String {
    let groups = groups(a);
    let compared: Vec<&Group> = groups.iter().filter(|g| g.runs.len() > 1).collect();
    if groups.is_empty() {
        return "not checked here: add `--perplexity FILE` to `candor bench` on every device compared (or run `candor perplexity` there)".into();
    }
    if compared.is_empty() {
        return "partly: a perplexity on one device per model; measure the same text on each device compared".into();
    }
    let worst = compared.iter().map(|g| g.gap()).fold(0.0, f64::max);
    let runs: usize = compared.iter().map(|g| g.runs.len()).sum();
    let same_top1 = compared
        .iter()
        .filter_map(|g| g.worst_agreement())
        .map(|a| a.same_top1)
        .reduce(f64::min)
        .map(|x| format!("; the same next token at ≥ {} of positions", pct(x)))
        .unwrap_or_default();
    match worst < PARITY_GAP {
        true => format!(
            "met: the same text's perplexity agrees within {} over {runs} runs{same_top1} (Accuracy section)",
            pct(worst)
        ),
        false => format!(
            "not met: perplexities of the same model and text differ by up to {} (Accuracy section)",
            pct(worst)
        ),
    }
}

/// The Accuracy section (nothing when no run recorded a perplexity).
pub fn section(out: &mut String, a: &Analysis) {
    let groups = groups(a);
    if groups.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Accuracy: perplexity\n\nFrom `candor bench --perplexity FILE` (measured on each device after its timed tests) and `candor perplexity` (a model file, or a server through its completions endpoint): the model's perplexity on a text, by llama-perplexity's method (chunks of `ctx` tokens, the second half of each scored). Devices and engines that compute the same model agree up to rounding (under {}); a larger gap means one of them computes, or reads, the model differently, whatever its speed. A server's run has no per-position picks to compare.\n",
        pct(PARITY_GAP)
    );
    let mut rows = Vec::new();
    for g in &groups {
        let first = g.first();
        for (i, e) in g.runs.iter().enumerate() {
            let p = e.ppl;
            let agreed = match i {
                0 => None,
                _ => agreement(first, p),
            };
            rows.push(vec![
                g.model().to_string(),
                e.quantization.unwrap_or("?").to_string(),
                e.software.to_string(),
                e.system.to_string(),
                format!(
                    "{} ({})",
                    first.file,
                    p.file_sha256.chars().take(8).collect::<String>()
                ),
                format!("{} × {}", first.chunks, first.ctx),
                format!("{:.4} ± {:.4}", p.ppl, p.ppl_stderr),
                match i {
                    0 => "–".into(),
                    _ => format!("{:+.3}%", 100.0 * (p.ppl / first.ppl - 1.0)),
                },
                agreed.map_or("–".into(), |a| {
                    format!("{} of {}", pct(a.same_top1), a.positions)
                }),
                agreed.map_or("–".into(), |a| format!("{:.4}", a.mean_abs_logprob_diff)),
            ]);
        }
    }
    let _ = writeln!(
        out,
        "{}",
        table(
            &[
                "model",
                "quantization",
                "software",
                "system",
                "text (sha256)",
                "chunks × ctx",
                "PPL",
                "vs first",
                "same top-1 as first",
                "mean abs Δ logprob",
            ],
            &[false, false, false, false, false, true, true, true, true, true],
            &rows
        )
    );
    for g in groups.iter().filter(|g| g.runs.len() > 1) {
        let top1 = g
            .worst_agreement()
            .map(|a| {
                format!(
                    ", the same most likely token as the first at ≥ {} of {} positions",
                    pct(a.same_top1),
                    a.positions
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- {} on {}: {} runs, largest gap {}{top1} ({}).",
            g.model(),
            g.first().file,
            g.runs.len(),
            pct(g.gap()),
            match g.gap() < PARITY_GAP {
                true => "the same model, up to rounding",
                false => "beyond rounding: compare the devices' outputs before their speeds",
            }
        );
    }
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::claims::ClaimsDb;
    use crate::bench::specs::SpecDb;
    use crate::report::analysis::analyze;
    use crate::report::analysis::tests::{cpu_run, row};
    use crate::report::input::{Input, Phase};

    fn run(software: &str, device: &str, ppl: Option<(f64, &str)>) -> Input {
        run_with(software, device, ppl, &[], &[])
    }

    fn run_with(
        software: &str,
        device: &str,
        ppl: Option<(f64, &str)>,
        top1_ids: &[u32],
        logprobs: &[f32],
    ) -> Input {
        let mut r = cpu_run(software, vec![row("tg64", Phase::Decode, 64, 50.0)]);
        r.device_name = device.into();
        r.perplexity = ppl.map(|(ppl, sha)| PerplexityRun {
            file: "wiki.test.raw".into(),
            file_sha256: sha.into(),
            ctx: 512,
            chunks: 12,
            tokens_scored: 3060,
            ppl,
            ppl_stderr: 0.5,
            top1_ids: top1_ids.to_vec(),
            logprobs: logprobs.to_vec(),
        });
        Input::Local(r)
    }

    fn verdict_and_section(inputs: Vec<Input>) -> (String, String) {
        let specs = SpecDb::builtin().unwrap();
        let claims = ClaimsDb::builtin().unwrap();
        let named = inputs
            .into_iter()
            .enumerate()
            .map(|(i, r)| (format!("{i}.json"), r))
            .collect();
        let a = analyze(&specs, &claims, "h100", named).unwrap();
        let mut section_text = String::new();
        section(&mut section_text, &a);
        (verdict(&a), section_text)
    }

    #[test]
    fn same_text_on_two_devices_is_compared_and_judged() {
        // Whatever a result file holds as the text's hash is shown without splitting a character.
        let text = "aéééééééé";
        let (v, s) = verdict_and_section(vec![
            run("candor x", "AMD EPYC", Some((45.7843, text))),
            run(
                "candor x",
                "Intel(R) Xeon(R) Processor",
                Some((45.8011, text)),
            ),
        ]);
        assert!(v.starts_with("met:") && v.contains("0.04%"), "{v}");
        assert!(s.contains("| 45.8011 ± 0.5000 | +0.037% | – | – |"), "{s}");
        // The first run is the baseline: no gap to itself; every row has the header's columns.
        assert!(s.contains("| 45.7843 ± 0.5000 | – | – | – |"), "{s}");
        let columns = |l: &str| l.matches(" | ").count();
        let lines: Vec<&str> = s.lines().filter(|l| l.starts_with('|')).collect();
        assert!(lines.iter().all(|l| columns(l) == columns(lines[2])), "{s}");
        assert!(
            s.contains("largest gap 0.04% (the same model, up to rounding)"),
            "{s}"
        );
        // A device 5% off computes something else.
        let (v, s) = verdict_and_section(vec![
            run("candor x", "AMD EPYC", Some((45.0, text))),
            run(
                "candor x",
                "Intel(R) Xeon(R) Processor",
                Some((47.25, text)),
            ),
        ]);
        assert!(v.starts_with("not met:") && v.contains("5.0%"), "{v}");
        assert!(s.contains("beyond rounding"), "{s}");
    }

    /// Runs that kept their picks are compared position by position over the positions both
    /// kept.
    #[test]
    fn picks_are_compared_position_by_position() {
        let text = "aaaaaaaaaaaa";
        let (v, s) = verdict_and_section(vec![
            run_with(
                "candor x",
                "AMD EPYC",
                Some((45.0, text)),
                &[1, 2, 3, 4],
                &[-1.0, -2.0, -3.0, -4.0],
            ),
            run_with(
                "candor x",
                "Intel(R) Xeon(R) Processor",
                Some((45.1, text)),
                &[1, 2, 9, 4, 5],
                &[-1.0, -2.5, -3.0, -4.5, -9.0],
            ),
        ]);
        assert!(
            v.contains("the same next token at ≥ 75% of positions"),
            "{v}"
        );
        assert!(s.contains("| 75% of 4 | 0.2500 |"), "{s}");
        assert!(s.contains("at ≥ 75% of 4 positions"), "{s}");
    }

    #[test]
    fn perplexities_measured_alone_join_the_runs_of_their_model() {
        use crate::report::input::PerplexityDoc;
        let text = "aaaaaaaaaaaa";
        let Input::Local(bench) = run("candor x", "AMD EPYC", Some((45.0, text))) else {
            unreachable!()
        };
        let alone = |software: &str, system: &str, model: &str, ppl: f64| {
            let mut p = bench.perplexity.clone().unwrap();
            p.ppl = ppl;
            Input::Perplexity(PerplexityDoc {
                file: format!("{system}.json"),
                software: software.into(),
                model_key: model.into(),
                quantization: None,
                system: system.into(),
                run: p,
            })
        };
        let (v, s) = verdict_and_section(vec![
            Input::Local(bench.clone()),
            alone("server", "vLLM 0.11 on H100", "m", 46.35),
            alone("server", "another model's server", "other", 80.0),
        ]);
        // The server's run of the same model and text is judged with the bench run: 3% off.
        assert!(v.starts_with("not met:") && v.contains("3.0%"), "{v}");
        assert!(s.contains("| server | vLLM 0.11 on H100 |"), "{s}");
        assert!(s.contains("| +3.000% |"), "{s}");
        assert!(s.contains("m on wiki.test.raw: 2 runs"), "{s}");
        // A different model stands alone.
        assert!(
            s.contains("| other | ? | server | another model's server |"),
            "{s}"
        );
        assert!(!s.contains("other on wiki.test.raw"), "{s}");
    }

    #[test]
    fn different_texts_or_missing_perplexities_are_not_compared() {
        let (v, s) = verdict_and_section(vec![
            run("candor x", "AMD EPYC", Some((45.0, "aaaa"))),
            run(
                "candor x",
                "Intel(R) Xeon(R) Processor",
                Some((60.0, "bbbb")),
            ),
        ]);
        assert!(v.starts_with("partly:"), "{v}");
        assert!(!s.contains("largest gap"), "{s}");
        let (v, s) = verdict_and_section(vec![run("candor x", "AMD EPYC", None)]);
        assert!(v.starts_with("not checked here:"), "{v}");
        assert_eq!(s, "");
    }
}
