//! Input integrity: corrupt, truncated or lying files and out-of-range settings are clear errors,
//! and the loaders and parsers never panic on any input (property tests with proptest, a few
//! hundred cases each so that the suite runs in seconds).

use std::io::Cursor;

use equireg::images::{self, SizePolicy, decode_rgb};
use equireg::regularizer::EquiRegConfig;
use equireg::task::Task;
use equireg_nn::{Weights, npy};
use proptest::prelude::*;

/// A 24x20 gradient as PNG bytes.
fn png_bytes() -> Vec<u8> {
    let img = image::RgbImage::from_fn(20, 24, |x, y| {
        image::Rgb([(x * 9) as u8, (y * 9) as u8, 77])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A 64x48 picture with detail as baseline JPEG bytes.
fn jpeg_bytes() -> Vec<u8> {
    let img = image::RgbImage::from_fn(48, 64, |x, y| {
        image::Rgb([((x * 31) ^ (y * 17)) as u8, (x * y) as u8, (y * 5) as u8])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
        .unwrap();
    out
}

#[test]
fn intact_images_decode() {
    let p = decode_rgb(&png_bytes()).unwrap();
    assert_eq!((p.height, p.width), (24, 20));
    let j = decode_rgb(&jpeg_bytes()).unwrap();
    assert_eq!((j.height, j.width), (64, 48));
}

#[test]
fn a_truncated_jpeg_is_an_error_not_a_gray_filled_image() {
    let full = jpeg_bytes();
    // Cut in the middle of the entropy-coded data: the lenient decoder would fill the rest
    // with gray and succeed.
    let cut = &full[..full.len() * 2 / 3];
    let lenient = image::load_from_memory(cut);
    assert!(
        lenient.is_ok(),
        "this test needs a cut the lenient decoder accepts"
    );
    let e = decode_rgb(cut).unwrap_err().to_string();
    assert!(e.contains("truncated or corrupt"), "{e}");
}

#[test]
fn a_truncated_png_is_an_error() {
    let full = png_bytes();
    let e = decode_rgb(&full[..full.len() - 20])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot decode") || e.contains("corrupt"), "{e}");
}

#[test]
fn a_jpeg_header_claiming_a_huge_image_is_refused_before_decoding() {
    let mut b = jpeg_bytes();
    // SOF0: FF C0, length (2), precision (1), height (2), width (2).
    let sof = b.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    b[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]); // 60000 x 60000
    let e = decode_rgb(&b).unwrap_err().to_string();
    assert!(e.contains("too large") || e.contains("limit"), "{e}");
}

#[test]
fn resize_and_crop_targets_beyond_the_limits_are_refused_before_allocating() {
    let img = images::RgbImage::filled(8, 8, 0.5);
    let e = images::fit(&img, 8, &SizePolicy::Resize(Some([1 << 20, 1 << 20])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("too large"), "{e}");
    let e = images::fit(&img, 1, &SizePolicy::Resize(Some([usize::MAX, 8])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("too large"), "{e}");
    let e = images::fit(&img, 8, &SizePolicy::Crop(Some([0, 8])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 1"), "{e}");
}

#[test]
fn a_device_or_folder_given_as_a_file_is_refused_without_reading_it() {
    // /dev/zero would never end; a folder would be an OS error without the path.
    for p in ["/dev/zero", "/tmp"] {
        let e = images::load_rgb(std::path::Path::new(p))
            .unwrap_err()
            .to_string();
        assert!(e.contains(p) && e.contains("not a regular file"), "{e}");
        let e = Weights::load(std::path::Path::new(p))
            .unwrap_err()
            .to_string();
        assert!(e.contains(p) && e.contains("not a regular file"), "{e}");
    }
    let e = Task::load("/dev/zero.toml", &[]).unwrap_err().to_string();
    assert!(e.contains("/dev/zero.toml"), "{e}");
}

#[test]
fn non_finite_and_out_of_range_task_settings_are_refused_by_name() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("sr4", &["noise.sigma=nan"], "noise.sigma"),
        ("sr4", &["noise.sigma=inf"], "noise.sigma"),
        ("sr4", &["noise.sigma=-0.1"], "noise.sigma"),
        ("sr4", &["operator.scale=100000000000"], "operator.scale"),
        ("sr4", &["dps.zeta=inf"], "dps.zeta"),
        ("sr4", &["dps.zeta=nan"], "dps.zeta"),
        ("gaussian-deblur", &["operator.sigma=inf"], "operator.sigma"),
        ("gaussian-deblur", &["operator.sigma=-1"], "operator.sigma"),
        (
            "gaussian-deblur",
            &["operator.size=100001"],
            "operator.size",
        ),
        (
            "motion-deblur",
            &["operator.intensity=nan"],
            "operator.intensity",
        ),
        (
            "phase-retrieval",
            &["operator.oversample=inf"],
            "operator.oversample",
        ),
        ("hdr", &["operator.scale=inf"], "operator.scale"),
        ("sr4", &["noise={kind=\"poisson\", rate=nan}"], "noise.rate"),
        ("sr4", &["noise={kind=\"poisson\", rate=inf}"], "noise.rate"),
        ("sr4", &["equireg.group=\"shift:0\""], "only the identity"),
        ("sr4", &["equireg.alpha=-1"], "alpha"),
    ];
    for (task, set, needle) in cases {
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        let e = Task::load(task, &set)
            .err()
            .unwrap_or_else(|| panic!("{task} {set:?} was accepted"))
            .to_string();
        assert!(
            e.contains(needle),
            "{task} {set:?}: expected {needle:?} in {e}"
        );
    }
}

#[test]
fn equireg_settings_refuse_non_finite_numbers_and_identity_groups() {
    for (spec, needle) in [
        ("alpha=nan", "alpha"),
        ("alpha=inf", "alpha"),
        ("freq=0", "freq"),
        ("freq=nan", "freq"),
        ("group=shift:0", "only the identity"),
        ("group=hflip*hflip", "only the identity"),
        ("cutoff=-1", "cutoff"),
    ] {
        let e = EquiRegConfig::default()
            .with_settings(spec)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{spec}: {e}");
    }
}

#[test]
fn eta_must_be_finite_and_non_negative() {
    use equireg::schedule::Sampler;
    for eta in [f64::NAN, f64::INFINITY, -0.5] {
        let e = Sampler::parse("ddim", eta).unwrap_err().to_string();
        assert!(e.contains("--eta"), "{e}");
    }
    assert!(Sampler::parse("ddim", 0.5).is_ok());
}

/// A .npy header with `descr` and `shape` (Python tuple text) and `data` after it.
fn npy_with(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn npy_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = npy::decode_f32(&bytes);
        let _ = npy::decode_int(&bytes);
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&bytes);
        let _ = npy::decode_f32(&b);
        let _ = npy::decode_int(&b);
    }

    #[test]
    fn npy_shapes_are_checked_against_the_data(
        dims in proptest::collection::vec(any::<u64>(), 0..5),
        small in proptest::collection::vec(0u64..5, 0..4),
        data_len in 0usize..64,
        descr in prop::sample::select(vec!["<f4", "<i8", "<i4", "<f8", "|u1", ">f4"]),
    ) {
        let data = vec![0u8; data_len];
        for d in [&dims, &small] {
            let tuple = match d.len() {
                1 => format!("({},)", d[0]),
                _ => format!("({})", d.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")),
            };
            let bytes = npy_with(descr, &tuple, &data);
            let item = match descr { "<f4" | "<i4" => 4u128, "<i8" => 8, _ => 0 };
            let want: Option<u128> = d.iter().try_fold(1u128, |a, &v| a.checked_mul(v as u128));
            let ok_f32 = npy::decode_f32(&bytes);
            let ok_int = npy::decode_int(&bytes);
            let exact = item > 0 && want.map(|n| n * item) == Some(data_len as u128);
            if descr == "<f4" {
                prop_assert_eq!(ok_f32.is_ok(), exact, "{} {}: {:?}", descr, tuple, ok_f32.as_ref().err());
            } else {
                prop_assert!(ok_f32.is_err());
            }
            if descr == "<i8" || descr == "<i4" {
                prop_assert_eq!(ok_int.is_ok(), exact, "{} {}: {:?}", descr, tuple, ok_int.as_ref().err());
            } else {
                prop_assert!(ok_int.is_err());
            }
        }
    }

    #[test]
    fn safetensors_never_panics(
        header in "\\PC{0,80}",
        n in 0u64..1000,
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut b = n.to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(&tail);
        let _ = Weights::from_safetensors(&b);
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(&tail);
        let _ = Weights::from_safetensors(&b);
    }

    #[test]
    fn safetensors_headers_with_lying_offsets_never_panic(
        dtype in prop::sample::select(vec!["F32", "F16", "BF16", "F64", "I64", "U8"]),
        shape in proptest::collection::vec(0u64..1_000_000_000_000, 0..4),
        start in 0u64..100,
        end in 0u64..100,
        data_len in 0usize..64,
    ) {
        let shape: Vec<String> = shape.iter().map(|v| v.to_string()).collect();
        let header = format!(
            "{{\"t\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{start},{end}]}}}}",
            shape.join(",")
        );
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend(std::iter::repeat_n(0u8, data_len));
        let _ = Weights::from_safetensors(&b);
    }

    #[test]
    fn task_toml_never_panics(text in "\\PC{0,200}", set in proptest::collection::vec("\\PC{0,30}", 0..3)) {
        let _ = Task::parse(&text, &set);
        let _ = Task::load("sr4", &set);
    }

    #[test]
    fn task_overrides_never_panic(
        key in prop::sample::select(vec![
            "noise.sigma", "noise.rate", "noise.kind", "operator.scale", "operator.size",
            "operator.sigma", "operator.hole", "operator.margin", "operator.drop",
            "operator.oversample", "dps.zeta", "dps.zeta_rule", "equireg.group",
            "equireg.cutoff", "equireg.freq", "name", "a.b.c", "noise.sigma.x",
        ]),
        value in prop_oneof![
            any::<f64>().prop_map(|v| v.to_string()),
            any::<i64>().prop_map(|v| v.to_string()),
            "\\PC{0,12}",
            Just("nan".to_string()), Just("inf".to_string()), Just("-inf".to_string()),
            Just("[0.1, 0.2]".to_string()), Just("{a = 1}".to_string()),
        ],
        task in prop::sample::select(equireg::task::preset_names()),
    ) {
        let _ = Task::load(task, &[format!("{key}={value}")]);
    }

    #[test]
    fn equireg_settings_never_panic(spec in "\\PC{0,60}") {
        let _ = EquiRegConfig::default().with_settings(&spec);
    }

    #[test]
    fn equireg_values_never_panic(
        key in prop::sample::select(vec![
            "group", "alpha", "freq", "form", "reduction", "schedule", "cutoff", "count", "mpe",
        ]),
        value in prop_oneof![
            any::<f64>().prop_map(|v| v.to_string()),
            any::<i64>().prop_map(|v| v.to_string()),
            "[a-z0-9:*]{0,16}",
        ],
    ) {
        if let Ok(c) = EquiRegConfig::default().with_settings(&format!("{key}={value}")) {
            // What a run records reads back to the same settings.
            let again = EquiRegConfig::default().with_settings(&c.settings());
            prop_assert!(again.is_ok(), "{:?}", again.err());
            let _ = c.check_steps(100);
        }
    }

    #[test]
    fn image_decoding_never_panics_on_damaged_files(
        cut in 0.0f64..1.0,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        jpeg in any::<bool>(),
    ) {
        let mut b = if jpeg { jpeg_bytes() } else { png_bytes() };
        for (i, v) in &flips {
            let k = i.index(b.len());
            b[k] ^= v;
        }
        let n = ((b.len() as f64) * cut) as usize;
        if let Ok(img) = decode_rgb(&b[..n.max(1)]) {
            prop_assert!(img.check().is_ok());
        }
        let _ = decode_rgb(&b);
    }

    #[test]
    fn image_decoding_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_rgb(&bytes);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&bytes);
        let _ = decode_rgb(&png);
        let mut jpg = vec![0xFF, 0xD8, 0xFF];
        jpg.extend_from_slice(&bytes);
        let _ = decode_rgb(&jpg);
    }
}
