//! Reading the JSON fixtures that SAELens' scripts wrote (`tests/fixtures/saelens*`).
use serde_json::Value;

/// The array `v[key]` as `f64`s; panics naming `key` when it is missing.
pub fn f64s(v: &Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} missing"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("{key}: not a number")))
        .collect()
}

/// The array `v[key]` rounded to `f32`.
pub fn f32s(v: &Value, key: &str) -> Vec<f32> {
    f64s(v, key).into_iter().map(|x| x as f32).collect()
}

/// [`super::rel_err`] against a reference that must not be all zero (a comparison with
/// an all-zero reference would pass vacuously).
pub fn rel_err_nonzero(got: &[f32], want: &[f64]) -> f64 {
    assert!(want.iter().any(|&v| v != 0.0), "reference is all zero");
    super::rel_err(got, want)
}
