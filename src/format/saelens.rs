//! SAELens SAE folders: `cfg.json` + `sae_weights.safetensors` (feature `std`).
//!
//! ## What is read
//! Tensors (row-major, any of F32, F16, BF16 or F64 on disk, converted to `f32`):
//! `W_enc [d_in, d_sae]`, `b_enc [d_sae]`, `W_dec [d_sae, d_in]`, `b_dec [d_in]`, and
//! for JumpReLU `threshold [d_sae]` (or an older `log_threshold`, exponentiated as
//! SAELens does). A legacy `scaling_factor [d_sae]` is accepted only when it is all
//! ones (as SAELens drops it then).
//!
//! `cfg.json` in both schemas, decided as SAELens decides (`sae_lens_version`, at the
//! top level or in `metadata`, `≥ 6` means v6):
//! - **v6**: `architecture` (`standard` | `topk` | `jumprelu`), `d_in`, `d_sae`,
//!   `dtype`, `apply_b_dec_to_input` (default true), `normalize_activations`,
//!   `reshape_activations`, `k` and `rescale_acts_by_decoder_norm` for TopK.
//! - **pre-v6**: `activation_fn_str` (`relu`, or `topk` with `activation_fn_kwargs.k`),
//!   a boolean or null `normalize_activations`, missing `architecture` = standard,
//!   missing `apply_b_dec_to_input` = true.
//!
//! A TopK file with `rescale_acts_by_decoder_norm: true` is loaded with the decoder
//! norms folded in (SAELens' `_fold_norm_topk`: `W_enc[:, i]·n_i`, `b_enc,i·n_i`,
//! `W_dec,i / n_i`), which gives the same codes and reconstructions.
//!
//! ## What is refused (an [`Error::Format`] naming the field)
//! Architectures other than the three above (`gated`, transcoders, …);
//! `normalize_activations` other than `none` (`expected_average_only_in` needs a
//! dataset scale that is not in the folder; `constant_norm_rescale`, `layer_norm` and
//! `covariance_whitening` are not implemented); pre-v6 activations other than `relu` and
//! `topk`; `finetuning_scaling_factor: true` or a `scaling_factor` that is not all ones;
//! unknown tensors; shapes that disagree with `d_in`/`d_sae`; other tensor dtypes.
//!
//! ## Hostile files
//! Both files are read whole (an allocation bounded by the file's real length). The
//! safetensors header is parsed by the `safetensors` crate, which checks the declared
//! header length and every tensor offset against the buffer before anything is
//! sliced; each tensor's shape is then compared with `cfg.json` and its byte length
//! with its shape before the `f32` copy is allocated. No size read from a file
//! drives an allocation before it is checked against the file length.
//!
//! ## What is written
//! A v6 `cfg.json` (with `metadata.sae_lens_version = "6.0.0"` as the schema marker
//! and `metadata.sae_kernels_version`) and F32 tensors; the tied model is written as a
//! `standard` SAE with `apply_b_dec_to_input = false` and `b_dec = 0`
//! (see [`crate::owned::Sae::to_untied`]).

use crate::error::{Error, Result};
use crate::model::{Activation, Arch, Dims, Weights};
use crate::owned::{Sae, saelens_penalty};
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};
use serde_json::{Map, Value};
use std::path::Path;
use std::string::{String, ToString};
use std::vec::Vec;

/// The config file's name inside a SAELens folder.
pub const CFG_FILE: &str = "cfg.json";
/// The weights file's name inside a SAELens folder.
pub const WEIGHTS_FILE: &str = "sae_weights.safetensors";
/// The `sae_lens_version` written into saved configs: the first version of the v6
/// schema (it tells SAELens not to apply its pre-6.0 upgrade).
pub const WRITTEN_SCHEMA_VERSION: &str = "6.0.0";

fn cfg_err(field: &'static str, what: &'static str) -> Error {
    Error::Format {
        file: CFG_FILE,
        field,
        what,
    }
}

fn w_err(field: &'static str, what: &'static str) -> Error {
    Error::Format {
        file: WEIGHTS_FILE,
        field,
        what,
    }
}

/// The parts of `cfg.json` this crate uses, after the pre-v6 upgrade.
#[derive(Clone, Debug, PartialEq)]
pub struct SaeLensConfig {
    /// Input width `d_in` (= [`Dims::d`]).
    pub d_in: usize,
    /// Dictionary size `d_sae` (= [`Dims::h`]).
    pub d_sae: usize,
    /// The activation (`standard` = ReLU, `topk` with its `k`, `jumprelu`).
    pub activation: Activation,
    /// Subtract `b_dec` from the input before encoding.
    pub apply_b_dec_to_input: bool,
    /// TopK only: SAELens multiplies pre-activations by the decoder row norms (folded
    /// into the weights on load).
    pub rescale_acts_by_decoder_norm: bool,
    /// `dtype` as written (informational: tensors carry their own dtype).
    pub dtype: String,
    /// `reshape_activations`: `none`, or `hook_z` (the input is then given flattened,
    /// `n×d_in` with `d_in = n_heads·d_head`, which is the same memory layout).
    pub reshape_activations: String,
    /// The `metadata` object as JSON text (`{}` if absent; for pre-v6 files, the
    /// metadata keys SAELens would move there: `hook_name`, `model_name`, …).
    pub metadata_json: String,
    /// True if the file used the v6 schema.
    pub v6: bool,
}

impl SaeLensConfig {
    /// A config describing `sae` with empty metadata.
    #[must_use]
    pub fn for_model(sae: &Sae) -> Self {
        Self {
            d_in: sae.dims().d,
            d_sae: sae.dims().h,
            activation: sae.arch().activation,
            apply_b_dec_to_input: sae.arch().centers_input(),
            rescale_acts_by_decoder_norm: false,
            dtype: "float32".to_string(),
            reshape_activations: "none".to_string(),
            metadata_json: "{}".to_string(),
            v6: true,
        }
    }
}

/// Keys that SAELens' pre-6.0 upgrade moves into `metadata`.
const LLM_METADATA_KEYS: &[&str] = &[
    "model_name",
    "hook_name",
    "hook_head_index",
    "context_size",
    "prepend_bos",
    "seqpos_slice",
    "model_from_pretrained_kwargs",
    "dataset_path",
    "neuronpedia_id",
    "exclude_special_tokens",
    "sae_lens_training_version",
];

fn is_v6(obj: &Map<String, Value>) -> bool {
    let v = obj
        .get("sae_lens_version")
        .and_then(Value::as_str)
        .or_else(|| {
            obj.get("metadata")
                .and_then(|m| m.get("sae_lens_version"))
                .and_then(Value::as_str)
        });
    let Some(v) = v else { return false };
    let major = v.split(['.', '-', '+']).next().unwrap_or("");
    major
        .trim_start_matches('v')
        .parse::<u64>()
        .is_ok_and(|m| m >= 6)
}

fn get_dim(obj: &Map<String, Value>, field: &'static str) -> Result<usize> {
    let v = obj
        .get(field)
        .ok_or(cfg_err(field, "missing (a positive integer is required)"))?;
    let n = v
        .as_u64()
        .ok_or(cfg_err(field, "must be a positive integer"))?;
    let n = usize::try_from(n).map_err(|_| cfg_err(field, "too large for this machine"))?;
    if n == 0 {
        return Err(cfg_err(field, "must be at least 1"));
    }
    Ok(n)
}

fn get_bool(obj: &Map<String, Value>, field: &'static str, default: bool) -> Result<bool> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(cfg_err(field, "must be true or false")),
    }
}

fn get_str<'a>(obj: &'a Map<String, Value>, field: &'static str) -> Result<Option<&'a str>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(cfg_err(field, "must be a string")),
    }
}

fn get_k(v: Option<&Value>, field: &'static str) -> Result<usize> {
    let v = v.ok_or(cfg_err(field, "missing: TopK needs k"))?;
    let k = v
        .as_u64()
        .ok_or(cfg_err(field, "must be a positive integer"))?;
    let k = usize::try_from(k).map_err(|_| cfg_err(field, "too large"))?;
    if k == 0 {
        return Err(cfg_err(field, "must be at least 1"));
    }
    Ok(k)
}

/// Parse a `cfg.json` (either schema) into the configuration this crate runs.
///
/// # Errors
/// [`Error::Format`] (file `cfg.json`) naming the field that is missing, malformed or
/// describes something this crate refuses (see the [module docs](self)).
pub fn parse_config(json: &[u8]) -> Result<SaeLensConfig> {
    let root: Value = serde_json::from_slice(json).map_err(|_| cfg_err("", "not valid JSON"))?;
    let Value::Object(obj) = root else {
        return Err(cfg_err("", "not a JSON object"));
    };
    let v6 = is_v6(&obj);
    let d_in = get_dim(&obj, "d_in")?;
    let d_sae = get_dim(&obj, "d_sae")?;
    d_in.checked_mul(d_sae)
        .ok_or(cfg_err("d_sae", "d_in·d_sae overflows"))?;
    let apply_b_dec_to_input = get_bool(&obj, "apply_b_dec_to_input", true)?;

    let dtype = get_str(&obj, "dtype")?.unwrap_or("float32");
    const DTYPES: &[&str] = &["float32", "float64", "float16", "bfloat16"];
    if !DTYPES.contains(&dtype.trim_start_matches("torch.")) {
        return Err(cfg_err(
            "dtype",
            "unknown dtype (float32, float64, float16 or bfloat16, optionally torch.-prefixed)",
        ));
    }

    // normalize_activations: v6 string; pre-v6 bool/null.
    let norm = match obj.get("normalize_activations") {
        None | Some(Value::Null) => "none",
        Some(Value::Bool(false)) if !v6 => "none",
        Some(Value::Bool(true)) if !v6 => "expected_average_only_in",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(cfg_err("normalize_activations", "must be a string")),
    };
    match norm {
        "none" => {}
        "expected_average_only_in" => {
            return Err(cfg_err(
                "normalize_activations",
                "expected_average_only_in needs a dataset scale that is not stored in the folder; \
                 fold it into the weights (SAELens fold_activation_norm_scaling_factor) and save \
                 with none",
            ));
        }
        "constant_norm_rescale" | "layer_norm" | "covariance_whitening" => {
            return Err(cfg_err(
                "normalize_activations",
                "run-time normalisation mode not implemented (only none is supported)",
            ));
        }
        _ => return Err(cfg_err("normalize_activations", "unknown mode")),
    }

    let reshape = get_str(&obj, "reshape_activations")?.unwrap_or("none");
    if reshape != "none" && reshape != "hook_z" {
        return Err(cfg_err(
            "reshape_activations",
            "unknown mode (none or hook_z)",
        ));
    }
    if get_bool(&obj, "finetuning_scaling_factor", false)? {
        return Err(cfg_err(
            "finetuning_scaling_factor",
            "fine-tuning scaling factors are not supported",
        ));
    }

    let mut arch = get_str(&obj, "architecture")?;
    let mut k_field: Option<(&Value, &'static str)> = obj.get("k").map(|v| (v, "k"));
    if !v6 {
        arch = Some(arch.unwrap_or("standard"));
        let act = match get_str(&obj, "activation_fn_str")? {
            Some(a) => Some(("activation_fn_str", a)),
            None => get_str(&obj, "activation_fn")?.map(|a| ("activation_fn", a)),
        };
        match act {
            None | Some((_, "relu")) => {}
            Some((_, "topk")) => {
                let k = obj
                    .get("activation_fn_kwargs")
                    .and_then(|kw| kw.get("k"))
                    .ok_or(cfg_err("activation_fn_kwargs.k", "missing: TopK needs k"))?;
                arch = Some("topk");
                k_field = Some((k, "activation_fn_kwargs.k"));
            }
            Some((field, _)) => {
                return Err(cfg_err(
                    field,
                    "activation not supported (relu or topk; other pre-v6 activations are refused)",
                ));
            }
        }
    }
    let arch = arch.ok_or(cfg_err("architecture", "missing (required in v6 configs)"))?;
    let mut rescale = false;
    let activation = match arch {
        "standard" => Activation::Relu,
        "jumprelu" => Activation::JumpRelu,
        "topk" => {
            let (v, field) = match k_field {
                Some((v, f)) => (Some(v), f),
                None => (None, "k"),
            };
            rescale = get_bool(&obj, "rescale_acts_by_decoder_norm", false)?;
            let k = get_k(v, field)?;
            if k > d_sae {
                // SAELens' torch.topk fails on such a file; refuse it too.
                return Err(cfg_err(field, "k must not exceed d_sae"));
            }
            Activation::TopK { k }
        }
        "gated" => return Err(cfg_err("architecture", "gated SAEs are not supported")),
        _ => {
            return Err(cfg_err(
                "architecture",
                "unsupported architecture (standard, topk and jumprelu are supported)",
            ));
        }
    };

    let metadata = if v6 {
        match obj.get("metadata") {
            Some(Value::Object(m)) => m.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(cfg_err("metadata", "must be an object")),
        }
    } else {
        let mut m = Map::new();
        for &key in LLM_METADATA_KEYS {
            let src = match key {
                "hook_name" if !obj.contains_key("hook_name") => "hook_point",
                "hook_head_index" if !obj.contains_key("hook_head_index") => {
                    "hook_point_head_index"
                }
                k => k,
            };
            if let Some(v) = obj.get(src) {
                m.insert(key.to_string(), v.clone());
            }
        }
        m
    };

    Ok(SaeLensConfig {
        d_in,
        d_sae,
        activation,
        apply_b_dec_to_input,
        rescale_acts_by_decoder_norm: rescale,
        dtype: dtype.to_string(),
        reshape_activations: reshape.to_string(),
        metadata_json: Value::Object(metadata).to_string(),
        v6,
    })
}

fn st_err(e: &SafeTensorError) -> Error {
    let what = match e {
        SafeTensorError::HeaderTooSmall => "file shorter than the 8-byte header length",
        SafeTensorError::HeaderTooLarge => "declared header length is too large",
        SafeTensorError::InvalidHeaderLength => "declared header length exceeds the file",
        SafeTensorError::InvalidHeader(_) => "header is not UTF-8",
        SafeTensorError::InvalidHeaderDeserialization(_) => "header is not valid safetensors JSON",
        SafeTensorError::InvalidOffset(_) => "tensor offsets are out of order or out of range",
        SafeTensorError::MetadataIncompleteBuffer => {
            "tensor data does not match the file length (truncated or padded)"
        }
        SafeTensorError::TensorInvalidInfo => "a tensor's byte size does not match its shape",
        SafeTensorError::ValidationOverflow => "a tensor's declared size overflows",
        SafeTensorError::MisalignedSlice => "a tensor's size is not a whole number of bytes",
        _ => "malformed safetensors file",
    };
    w_err("", what)
}

/// Convert one tensor to `f32`, checking its shape first.
fn to_f32(t: &TensorView<'_>, field: &'static str, shape: &[usize]) -> Result<Vec<f32>> {
    if t.shape() != shape {
        return Err(w_err(
            field,
            "shape does not match d_in/d_sae in cfg.json (W_enc [d_in, d_sae], W_dec [d_sae, d_in])",
        ));
    }
    let n: usize = shape.iter().product();
    let data = t.data();
    let size = match t.dtype() {
        Dtype::F32 => 4,
        Dtype::F16 | Dtype::BF16 => 2,
        Dtype::F64 => 8,
        _ => return Err(w_err(field, "unsupported dtype (F32, F16, BF16 or F64)")),
    };
    // The crate has checked len == numel·size against the file; check again so that
    // the allocation below can never exceed the file.
    if n.checked_mul(size) != Some(data.len()) {
        return Err(w_err(field, "byte size does not match the shape"));
    }
    let mut out = crate::format::alloc::try_with_capacity(n, field)?;
    match t.dtype() {
        Dtype::F32 => out.extend(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        Dtype::F16 => out.extend(
            data.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        Dtype::BF16 => out.extend(
            data.chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        _ => out.extend(data.chunks_exact(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            f64::from_le_bytes(a) as f32
        })),
    }
    Ok(out)
}

/// Parse `sae_weights.safetensors` for a parsed config into a model.
///
/// # Errors
/// [`Error::Format`] (file `sae_weights.safetensors`) for a malformed or truncated file
/// (field empty), or naming the tensor that is missing, has the wrong shape or dtype,
/// is unexpected, or is a `scaling_factor` that is not all ones.
pub fn parse_weights(cfg: &SaeLensConfig, bytes: &[u8]) -> Result<Sae> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| st_err(&e))?;
    let (d, h) = (cfg.d_in, cfg.d_sae);
    let jump = cfg.activation == Activation::JumpRelu;
    for name in st.names() {
        let known = matches!(
            name,
            "W_enc" | "b_enc" | "W_dec" | "b_dec" | "scaling_factor"
        ) || (jump && matches!(name, "threshold" | "log_threshold"));
        if !known {
            return Err(w_err(
                "",
                "unexpected tensor for this architecture (known: W_enc, b_enc, W_dec, b_dec, \
                 threshold/log_threshold for jumprelu, all-ones scaling_factor)",
            ));
        }
    }
    let get = |field: &'static str, shape: &[usize]| -> Result<Vec<f32>> {
        let t = st
            .tensor(field)
            .map_err(|_| w_err(field, "missing tensor"))?;
        to_f32(&t, field, shape)
    };
    let mut w_enc = get("W_enc", &[d, h])?;
    let mut b_enc = get("b_enc", &[h])?;
    let mut w_dec = get("W_dec", &[h, d])?;
    let b_dec = get("b_dec", &[d])?;
    if st.names().contains(&"scaling_factor") {
        let s = get("scaling_factor", &[h])?;
        // torch.allclose(s, 1): |s − 1| ≤ 1e-8 + 1e-5·1
        if !s.iter().all(|&v| (v - 1.0).abs() <= 1e-5 + 1e-8) {
            return Err(w_err(
                "scaling_factor",
                "fine-tuning scaling factors other than all ones are not supported",
            ));
        }
    }
    let threshold = if jump {
        if st.names().contains(&"threshold") {
            get("threshold", &[h])?
        } else if st.names().contains(&"log_threshold") {
            get("log_threshold", &[h])?
                .into_iter()
                .map(libm::expf)
                .collect()
        } else {
            return Err(w_err("threshold", "missing tensor (required for jumprelu)"));
        }
    } else {
        Vec::new()
    };
    if cfg.rescale_acts_by_decoder_norm {
        // SAELens `_fold_norm_topk` with `get_W_dec_norm`'s clamp at 1e-8.
        for (i, row) in w_dec.chunks_exact_mut(d).enumerate() {
            let nrm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-8);
            for v in row.iter_mut() {
                *v /= nrm;
            }
            b_enc[i] *= nrm;
            for j in 0..d {
                w_enc[j * h + i] *= nrm;
            }
        }
    }
    let dims = Dims::new(d, h)?;
    let arch = Arch {
        weights: Weights::Untied {
            center_input: cfg.apply_b_dec_to_input,
        },
        activation: cfg.activation,
        penalty: saelens_penalty(cfg.activation),
    };
    let mut tensors: Vec<&[f32]> = std::vec![&w_enc, &b_enc, &w_dec, &b_dec];
    if jump {
        tensors.push(&threshold);
    }
    Sae::from_tensors(arch, dims, &tensors)
}

fn io_what(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "not found",
        std::io::ErrorKind::PermissionDenied => "permission denied",
        std::io::ErrorKind::IsADirectory => "is a directory",
        _ => "cannot be read or written (I/O error)",
    }
}

/// Load a SAELens folder (`dir/cfg.json` and `dir/sae_weights.safetensors`).
///
/// Returns the parsed config and the model (weights in `f32`).
///
/// # Errors
/// [`Error::Format`] with field empty if a file cannot be read (not found, …);
/// otherwise as [`parse_config`] and [`parse_weights`].
pub fn load(dir: &Path) -> Result<(SaeLensConfig, Sae)> {
    let cfg_bytes = std::fs::read(dir.join(CFG_FILE)).map_err(|e| cfg_err("", io_what(&e)))?;
    let cfg = parse_config(&cfg_bytes)?;
    let w = std::fs::read(dir.join(WEIGHTS_FILE)).map_err(|e| w_err("", io_what(&e)))?;
    let sae = parse_weights(&cfg, &w)?;
    Ok((cfg, sae))
}

/// The v6 `cfg.json` text for `sae`, taking `reshape_activations` and the metadata
/// from `cfg` (its other fields are ignored: the model decides them). A tied model is
/// described as its untied equivalent ([`Sae::to_untied`]).
///
/// # Errors
/// [`Error::Format`] naming `metadata` if `cfg.metadata_json` is not a JSON object.
pub fn config_json(sae: &Sae, cfg: &SaeLensConfig) -> Result<String> {
    let mut meta: Map<String, Value> = match serde_json::from_str(&cfg.metadata_json) {
        Ok(Value::Object(m)) => m,
        _ => return Err(cfg_err("metadata", "metadata_json must be a JSON object")),
    };
    let upgraded = meta
        .get("sae_lens_version")
        .and_then(Value::as_str)
        .is_some_and(|v| {
            let mut o = Map::new();
            o.insert("sae_lens_version".into(), Value::String(v.into()));
            is_v6(&o)
        });
    if !upgraded {
        meta.insert(
            "sae_lens_version".into(),
            Value::String(WRITTEN_SCHEMA_VERSION.into()),
        );
    }
    meta.insert(
        "sae_kernels_version".into(),
        Value::String(env!("CARGO_PKG_VERSION").into()),
    );
    let mut o = Map::new();
    o.insert("d_in".into(), sae.dims().d.into());
    o.insert("d_sae".into(), sae.dims().h.into());
    o.insert("dtype".into(), "float32".into());
    o.insert("device".into(), "cpu".into());
    o.insert(
        "apply_b_dec_to_input".into(),
        sae.arch().centers_input().into(),
    );
    o.insert("normalize_activations".into(), "none".into());
    let reshape = if cfg.reshape_activations == "hook_z" {
        "hook_z"
    } else {
        "none"
    };
    o.insert("reshape_activations".into(), reshape.into());
    o.insert("metadata".into(), Value::Object(meta));
    let arch = match sae.arch().activation {
        Activation::Relu => "standard",
        Activation::TopK { k } => {
            o.insert("k".into(), k.into());
            o.insert("rescale_acts_by_decoder_norm".into(), false.into());
            "topk"
        }
        Activation::JumpRelu => "jumprelu",
    };
    o.insert("architecture".into(), arch.into());
    serde_json::to_string_pretty(&Value::Object(o)).map_err(|_| cfg_err("", "cannot serialise"))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The `sae_weights.safetensors` bytes for `sae` (F32 tensors; a tied model as its
/// untied equivalent, [`Sae::to_untied`]).
///
/// # Errors
/// [`Error::Format`] if the serialiser fails.
pub fn weights_bytes(sae: &Sae) -> Result<Vec<u8>> {
    let Dims { d, h } = sae.dims();
    let untied = sae.to_untied();
    let tensors: Vec<(&str, Vec<u8>, Vec<usize>)> = untied
        .tensors()
        .iter()
        .map(|t| {
            let shape = match t.name {
                "W_enc" => std::vec![d, h],
                "W_dec" => std::vec![h, d],
                "b_dec" => std::vec![d],
                _ => std::vec![h],
            };
            (t.name, f32_bytes(t.data), shape)
        })
        .collect();
    let views = tensors
        .iter()
        .map(|(name, bytes, shape)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (*name, v))
                .map_err(|_| w_err(name_static(name), "buffer does not match its shape"))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::tensor::serialize(views, None).map_err(|_| w_err("", "cannot serialise"))
}

fn name_static(name: &str) -> &'static str {
    match name {
        "W_enc" => "W_enc",
        "b_enc" => "b_enc",
        "W_dec" => "W_dec",
        "b_dec" => "b_dec",
        _ => "threshold",
    }
}

/// Save `sae` as a SAELens folder (created if needed): a v6 `cfg.json` built by
/// [`config_json`] and F32 `sae_weights.safetensors`. Pass
/// [`SaeLensConfig::for_model`] for empty metadata, or a loaded config to keep its
/// metadata. A tied model is saved as a `standard` SAE with `W_enc = Mᵀ`,
/// `W_dec = M`, `b_enc = b`, `b_dec = 0` and `apply_b_dec_to_input = false` (the same
/// codes and reconstructions).
///
/// # Errors
/// [`Error::Format`] with field empty if the folder or a file cannot be written;
/// as [`config_json`] and [`weights_bytes`].
pub fn save(dir: &Path, sae: &Sae, cfg: &SaeLensConfig) -> Result<()> {
    let json = config_json(sae, cfg)?;
    let w = weights_bytes(sae)?;
    std::fs::create_dir_all(dir).map_err(|e| cfg_err("", io_what(&e)))?;
    std::fs::write(dir.join(WEIGHTS_FILE), w).map_err(|e| w_err("", io_what(&e)))?;
    std::fs::write(dir.join(CFG_FILE), json).map_err(|e| cfg_err("", io_what(&e)))?;
    Ok(())
}
