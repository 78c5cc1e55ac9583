//! Non-finite input is found and located: `Activations::first_non_finite` and
//! `check_finite` give the first NaN or infinity's row and column (0-based,
//! row-major), which the command-line tools report with the file's path.

use sae_kernels::Error;
use sae_kernels::format::npy::{Activations, read_npy, write_npy};
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[test]
fn first_non_finite_value_is_located_by_row_and_column() {
    let (rows, d) = (6, 5);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut data: Vec<f32> = (0..rows * d).map(|i| i as f32 * 0.5 - 3.0).collect();
        data[2 * d + 3] = bad;
        data[4 * d] = f32::NAN; // a later one is not the one reported
        let path = tmp("nonfinite.npy");
        write_npy(&path, &data, rows, d).unwrap();
        let a = read_npy(&path).unwrap();
        assert_eq!(a.first_non_finite(), Some((2, 3)), "{bad}");
        let e = a.check_finite("input").unwrap_err();
        assert_eq!(
            e,
            Error::NonFiniteInput {
                arg: "input",
                row: 2,
                col: 3
            }
        );
        assert!(e.to_string().contains("row 2, column 3"), "{e}");
    }
}

#[test]
fn finite_input_passes_and_edges_are_found() {
    let mut a = Activations {
        data: vec![1.0, -2.0, f32::MAX, f32::MIN_POSITIVE, -0.0, 1e-45],
        rows: 2,
        d: 3,
    };
    assert_eq!(a.first_non_finite(), None);
    assert_eq!(a.check_finite("input"), Ok(()));
    a.data[0] = f32::NAN;
    assert_eq!(a.first_non_finite(), Some((0, 0)));
    a.data[0] = 0.0;
    a.data[5] = f32::INFINITY;
    assert_eq!(a.first_non_finite(), Some((1, 2)));
}
