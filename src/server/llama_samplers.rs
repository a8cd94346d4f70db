//! The penalties, mirostat and dynamic temperature of a request, from OpenAI's, vLLM's and
//! llama.cpp's fields: `repetition_penalty` / `presence_penalty` / `frequency_penalty` over
//! the tokens `repeat_last_n` names (`engine::penalties`), `mirostat`, `mirostat_tau`,
//! `mirostat_eta` (`engine::mirostat`), `dynatemp_range`, `dynatemp_exponent`
//! (`engine::temperature`).
use super::error::ApiError;
use super::generation_defaults::Applied;
use super::openai::{CommonParams, Dialect};
use super::validate::range;
use crate::engine::mirostat::{Mirostat, MirostatVersion};
use crate::engine::penalties::{Penalties, PenaltyScope};
use crate::engine::temperature::DynamicTemperature;
use candor_models::generation_config::ranges;

/// The request's penalties; a field left out gets the model's default (repetition) or none.
pub fn penalties(p: &CommonParams, defaults: &Applied) -> Result<Penalties, ApiError> {
    let repetition = range(
        "repetition_penalty",
        p.repetition_penalty,
        ranges::REPETITION_PENALTY,
        defaults.repetition_penalty,
    )?;
    let last_n = match (p.samplers.repeat_last_n, p.dialect) {
        (Some(n), _) => Some(n),
        (None, Dialect::LlamaServer | Dialect::Ollama) => Some(defaults.repeat_last_n),
        (None, Dialect::OpenAi) => None,
    };
    let scope = match last_n {
        None => PenaltyScope::PromptAndAnswer,
        Some(n) => PenaltyScope::last_n(n).ok_or_else(|| {
            ApiError::invalid(
                "repeat_last_n",
                format!("`repeat_last_n` must be -1 (the whole context), 0 (off) or more, got {n}"),
            )
        })?,
    };
    Ok(Penalties {
        repetition,
        presence: range(
            "presence_penalty",
            p.presence_penalty,
            ranges::PRESENCE_PENALTY,
            0.0,
        )?,
        frequency: range(
            "frequency_penalty",
            p.frequency_penalty,
            ranges::FREQUENCY_PENALTY,
            0.0,
        )?,
        scope,
    })
}

/// The request's mirostat, or None when off (`mirostat` 0, or the model's default left).
pub fn mirostat(p: &CommonParams, defaults: &Applied) -> Result<Option<Mirostat>, ApiError> {
    let s = &p.samplers;
    let version = match s.mirostat.unwrap_or(defaults.mirostat as i64) {
        0 => return Ok(None),
        v => MirostatVersion::numbered(v).ok_or_else(|| {
            ApiError::invalid(
                "mirostat",
                format!("`mirostat` must be 0 (off), 1 or 2 (its version), got {v}"),
            )
        })?,
    };
    Ok(Some(Mirostat {
        version,
        tau: range(
            "mirostat_tau",
            s.mirostat_tau,
            ranges::MIROSTAT_TAU,
            defaults.mirostat_tau,
        )?,
        eta: range(
            "mirostat_eta",
            s.mirostat_eta,
            ranges::MIROSTAT_ETA,
            defaults.mirostat_eta,
        )?,
    }))
}

/// The request's dynamic temperature, or None when off (`dynatemp_range` absent or 0).
pub fn dynamic_temperature(p: &CommonParams) -> Result<Option<DynamicTemperature>, ApiError> {
    let s = &p.samplers;
    let reach = range(
        "dynatemp_range",
        s.dynatemp_range,
        ranges::DYNATEMP_RANGE,
        0.0,
    )?;
    let exponent = range(
        "dynatemp_exponent",
        s.dynatemp_exponent,
        ranges::DYNATEMP_EXPONENT,
        1.0,
    )?;
    Ok((reach > 0.0).then_some(DynamicTemperature {
        range: reach,
        exponent,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::generation_defaults::applied;
    use candor_models::generation_config::GenerationDefaults;
    use serde_json::json;

    fn params(v: serde_json::Value) -> CommonParams {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_endpoint_chooses_the_reading_unless_the_request_does() {
        let d = applied(&GenerationDefaults::default());
        let openai = params(json!({"repetition_penalty": 1.2}));
        let got = penalties(&openai, &d).unwrap();
        assert_eq!(got.scope, PenaltyScope::PromptAndAnswer);
        assert_eq!(got.repetition, 1.2);
        let native = CommonParams {
            dialect: Dialect::LlamaServer,
            ..openai.clone()
        };
        assert_eq!(
            penalties(&native, &d).unwrap().scope,
            PenaltyScope::LastN(64)
        );
        let model = applied(&GenerationDefaults {
            repeat_last_n: Some(256),
            ..Default::default()
        });
        assert_eq!(
            penalties(&native, &model).unwrap().scope,
            PenaltyScope::LastN(256)
        );
        assert_eq!(
            penalties(&openai, &model).unwrap().scope,
            PenaltyScope::PromptAndAnswer,
            "the OpenAI endpoints read penalties as vLLM does"
        );
        let whole = params(json!({"repeat_last_n": -1}));
        assert_eq!(
            penalties(&whole, &d).unwrap().scope,
            PenaltyScope::LastN(usize::MAX)
        );
        let e = penalties(&params(json!({"repeat_last_n": -2})), &d).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("repeat_last_n"));
        let e = penalties(&params(json!({"frequency_penalty": 3})), &d).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("frequency_penalty"));
    }

    #[test]
    fn mirostat_is_off_unless_asked_and_checked_when_asked() {
        let d = applied(&GenerationDefaults::default());
        assert_eq!(mirostat(&params(json!({})), &d).unwrap(), None);
        assert_eq!(mirostat(&params(json!({"mirostat": 0})), &d).unwrap(), None);
        let v2 = mirostat(&params(json!({"mirostat": 2})), &d)
            .unwrap()
            .unwrap();
        assert_eq!(
            (v2.version, v2.tau, v2.eta),
            (MirostatVersion::V2, 5.0, 0.1)
        );
        let model = applied(&GenerationDefaults {
            mirostat: Some(1),
            mirostat_tau: Some(3.0),
            ..Default::default()
        });
        let v1 = mirostat(&params(json!({"mirostat_eta": 0.5})), &model)
            .unwrap()
            .unwrap();
        assert_eq!(
            (v1.version, v1.tau, v1.eta),
            (MirostatVersion::V1, 3.0, 0.5)
        );
        assert_eq!(
            mirostat(&params(json!({"mirostat": 0})), &model).unwrap(),
            None,
            "a request turns the model's off"
        );
        for (body, field) in [
            (json!({"mirostat": 3}), "mirostat"),
            (json!({"mirostat": 2, "mirostat_tau": -1}), "mirostat_tau"),
            (json!({"mirostat": 1, "mirostat_eta": 1e9}), "mirostat_eta"),
        ] {
            let e = mirostat(&params(body), &d).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(field));
        }
    }
}
