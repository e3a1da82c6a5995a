//! Weights as safetensors files with the original PyTorch state-dict names. Loading is strict:
//! a model lists the (name, shape) pairs it needs and any missing, unexpected or mis-shaped tensor
//! is one error naming all of them. There is no silent random initialisation.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{NnError, Result};

/// Host-side f32 tensors by name.
#[derive(Clone, Debug, Default)]
pub struct Weights {
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

/// What a model expects: name and shape of every parameter, in a fixed order.
pub type WeightSpec = Vec<(String, Vec<usize>)>;

impl Weights {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: &str, shape: &[usize], data: Vec<f32>) {
        self.tensors
            .insert(name.to_string(), (shape.to_vec(), data));
    }

    pub fn get(&self, name: &str) -> Option<(&[usize], &[f32])> {
        self.tensors
            .get(name)
            .map(|(s, d)| (s.as_slice(), d.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Reads a safetensors file; f32, f16, bf16 and f64 tensors are converted to f32. NaN or
    /// infinite values are an error naming the tensors that hold them.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::io::read_file(path).map_err(NnError::Weights)?;
        Self::from_safetensors(&bytes)
            .map_err(|e| NnError::Weights(format!("{}: {e}", path.display())))
    }

    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        use safetensors::{Dtype, SafeTensors};
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| NnError::Weights(format!("not a valid safetensors file: {e}")))?;
        let mut w = Weights::new();
        let mut non_finite = Vec::new();
        for (name, view) in st.tensors() {
            let d = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => d
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F64 => d
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                Dtype::F16 => d
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                Dtype::BF16 => d
                    .chunks_exact(2)
                    .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                    .collect(),
                other => {
                    return Err(NnError::Weights(format!(
                        "tensor '{name}' has dtype {other:?}; only float tensors are weights"
                    )));
                }
            };
            let bad = crate::io::count_non_finite(&data);
            if bad > 0 {
                non_finite.push(format!("{name} ({bad} of {})", data.len()));
            }
            w.insert(&name, view.shape(), data);
        }
        if !non_finite.is_empty() {
            non_finite.sort();
            let more = non_finite.len().saturating_sub(5);
            non_finite.truncate(5);
            return Err(NnError::Weights(format!(
                "NaN or infinite values in tensor(s) {}{}: the checkpoint is broken",
                non_finite.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )));
        }
        Ok(w)
    }

    /// Writes all tensors as f32 safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_safetensors()?;
        crate::io::write_atomic(path, &bytes)
            .map_err(|e| NnError::Weights(format!("cannot write {}: {e}", path.display())))
    }

    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let raw: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(n, (s, d))| {
                (
                    n.clone(),
                    s.clone(),
                    d.iter().flat_map(|v| v.to_le_bytes()).collect(),
                )
            })
            .collect();
        let views = raw
            .iter()
            .map(|(n, s, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| NnError::Weights(e.to_string()))?;
        safetensors::serialize(views, None).map_err(|e| NnError::Weights(e.to_string()))
    }

    /// Checks the tensors against what a model expects; one error lists every problem.
    pub fn check(&self, spec: &WeightSpec) -> Result<()> {
        let mut missing = Vec::new();
        let mut misshaped = Vec::new();
        for (name, shape) in spec {
            match self.tensors.get(name) {
                None => missing.push(format!("{name} {shape:?}")),
                Some((s, _)) if s != shape => {
                    misshaped.push(format!("{name}: file has {s:?}, model needs {shape:?}"))
                }
                Some(_) => {}
            }
        }
        let expected: std::collections::HashSet<&str> =
            spec.iter().map(|(n, _)| n.as_str()).collect();
        let unexpected: Vec<String> = self
            .tensors
            .iter()
            .filter(|(n, _)| !expected.contains(n.as_str()))
            .map(|(n, (s, _))| format!("{n} {s:?}"))
            .collect();
        if missing.is_empty() && misshaped.is_empty() && unexpected.is_empty() {
            return Ok(());
        }
        let mut msg = String::from("the weights do not match the model");
        let mut section = |title: &str, items: &[String]| {
            if !items.is_empty() {
                msg += &format!("\n  {title} ({}):", items.len());
                for i in items.iter().take(20) {
                    msg += &format!("\n    {i}");
                }
                if items.len() > 20 {
                    msg += &format!("\n    ... and {} more", items.len() - 20);
                }
            }
        };
        section("missing", &missing);
        section("wrong shape", &misshaped);
        section("unexpected", &unexpected);
        Err(NnError::Weights(msg))
    }
}

/// IEEE 754 half to single precision (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m * 2^-24.
            let v = m as f32 * (1.0 / (1u32 << 24) as f32);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strict_check() {
        let mut w = Weights::new();
        w.insert("a.weight", &[2, 3], (0..6).map(|i| i as f32).collect());
        w.insert("b.bias", &[2], vec![1.0, -1.0]);
        let back = Weights::from_safetensors(&w.to_safetensors().unwrap()).unwrap();
        assert_eq!(
            back.get("a.weight").unwrap().1,
            w.get("a.weight").unwrap().1
        );
        let spec: WeightSpec = vec![("a.weight".into(), vec![2, 3]), ("b.bias".into(), vec![2])];
        back.check(&spec).unwrap();
        let spec2: WeightSpec = vec![
            ("a.weight".into(), vec![3, 2]),
            ("c.weight".into(), vec![1]),
        ];
        let e = back.check(&spec2).unwrap_err().to_string();
        assert!(e.contains("missing (1):\n    c.weight [1]"), "{e}");
        assert!(
            e.contains("a.weight: file has [2, 3], model needs [3, 2]"),
            "{e}"
        );
        assert!(e.contains("unexpected (1):\n    b.bias [2]"), "{e}");
    }

    #[test]
    fn corrupt_file_is_an_error() {
        assert!(Weights::from_safetensors(b"not safetensors").is_err());
    }

    #[test]
    fn nan_weights_are_an_error_naming_the_tensor() {
        let mut w = Weights::new();
        w.insert("ok.weight", &[2], vec![1.0, 2.0]);
        w.insert("bad.bias", &[3], vec![0.0, f32::NAN, f32::INFINITY]);
        let e = Weights::from_safetensors(&w.to_safetensors().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.bias (2 of 3)"), "{e}");
        assert!(!e.contains("ok.weight"), "{e}");
    }

    #[test]
    fn half_precision_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}
