//! The PDE problems, what is observed, and the per-channel normalisation of a field prior.

use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// A joint-field problem: channel 0 the coefficient (Darcy's a, the source f, or w0), channel 1
/// the solution (u, or w at T).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    Darcy,
    Poisson,
    Helmholtz,
    NavierStokes,
}

impl Problem {
    pub const ALL: [Problem; 4] = [
        Problem::Darcy,
        Problem::Poisson,
        Problem::Helmholtz,
        Problem::NavierStokes,
    ];

    pub fn parse(s: &str) -> Result<Problem> {
        Problem::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "--problem {s:?}: expected darcy, poisson, helmholtz or navier-stokes"
                ))
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            Problem::Darcy => "darcy",
            Problem::Poisson => "poisson",
            Problem::Helmholtz => "helmholtz",
            Problem::NavierStokes => "navier-stokes",
        }
    }

    /// The names of the two channels, for files and panels.
    pub fn channels(self) -> [&'static str; 2] {
        match self {
            Problem::Darcy => ["a", "u"],
            Problem::Poisson | Problem::Helmholtz => ["f", "u"],
            Problem::NavierStokes => ["w0", "w1"],
        }
    }

    /// Darcy's coefficient takes two values (3 and 12): thresholding a reconstruction at their
    /// midpoint gives the error rate the literature reports.
    pub fn coefficient_threshold(self) -> Option<f64> {
        match self {
            Problem::Darcy => Some(7.5),
            _ => None,
        }
    }

    /// The EquiReg group that is an exact symmetry of the problem's data (`../shared/specs/pde.md`
    /// section 5): D4 on both channels for the square with zero Dirichlet data. `None` for
    /// Navier-Stokes on the torus, whose forcing leaves only compound elements the group parser
    /// does not express yet.
    pub fn valid_group(self) -> Option<&'static str> {
        match self {
            Problem::Darcy | Problem::Poisson | Problem::Helmholtz => Some("d4"),
            Problem::NavierStokes => None,
        }
    }

    /// A group that is *not* a symmetry, the control of the ablation: cyclic shifts (the
    /// Dirichlet boundary breaks translations), or rot90 for the forced torus.
    pub fn invalid_group(self) -> &'static str {
        match self {
            Problem::NavierStokes => "rot90",
            _ => "shift:4",
        }
    }
}

/// Which channels carry observed points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observe {
    /// The coefficient (the forward problem: recover the solution).
    Coefficient,
    /// The solution (the inverse problem: recover the coefficient).
    Solution,
    Both,
}

impl Observe {
    pub fn parse(s: &str) -> Result<Observe> {
        match s.trim() {
            "a" | "coefficient" => Ok(Observe::Coefficient),
            "u" | "solution" => Ok(Observe::Solution),
            "both" => Ok(Observe::Both),
            other => Err(Error::invalid(format!(
                "--observe {other:?}: expected a, u or both"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Observe::Coefficient => "a",
            Observe::Solution => "u",
            Observe::Both => "both",
        }
    }

    /// Per channel: is it observed?
    pub fn channels(self) -> [bool; 2] {
        match self {
            Observe::Coefficient => [true, false],
            Observe::Solution => [false, true],
            Observe::Both => [true, true],
        }
    }
}

/// The per-channel affine map between physical fields and the prior's range:
/// `x_model = (x - mean) / std * scale` (FunDPS's convention: each channel at standard
/// deviation `scale` = 0.5), measured on the training set by `tools/train_prior.py --fields`
/// and stored as `field.json` beside the weights.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct FieldNorm {
    pub mean: [f64; 2],
    pub std: [f64; 2],
    pub scale: f64,
}

impl FieldNorm {
    pub fn from_json(text: &str, origin: &str) -> Result<FieldNorm> {
        let norm: FieldNorm = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("{origin}: not a field normalisation: {e}")))?;
        let finite = norm.mean.iter().chain(&norm.std).all(|v| v.is_finite());
        if !finite
            || norm.std.iter().any(|s| *s <= 0.0)
            || !norm.scale.is_finite()
            || norm.scale <= 0.0
        {
            return Err(Error::invalid(format!(
                "{origin}: the normalisation needs finite means and positive stds and scale, got \
                 {norm:?}"
            )));
        }
        Ok(norm)
    }

    pub fn load(path: &Path) -> Result<FieldNorm> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(path, format!("cannot read: {e}")))?;
        FieldNorm::from_json(&text, &path.display().to_string())
    }

    /// Physical fields `[N, 2, H, W]` to the model's range, in place.
    pub fn to_model(&self, x: &mut [f32], plane: usize) {
        for (k, chunk) in x.chunks_mut(plane).enumerate() {
            let c = k % 2;
            let (m, s) = (self.mean[c], self.std[c] / self.scale);
            for v in chunk {
                *v = ((*v as f64 - m) / s) as f32;
            }
        }
    }

    /// The model's range back to physical fields, in place.
    pub fn to_physical(&self, x: &mut [f32], plane: usize) {
        for (k, chunk) in x.chunks_mut(plane).enumerate() {
            let c = k % 2;
            let (m, s) = (self.mean[c], self.std[c] / self.scale);
            for v in chunk {
                *v = (*v as f64 * s + m) as f32;
            }
        }
    }
}

/// Reads `CASES.npy`: float32 `[N, 2, H, W]`, physical units, every value finite.
pub fn load_cases(path: &Path) -> Result<([usize; 4], Vec<f32>)> {
    let (shape, data) = equireg_nn::npy::read_f32(path)?;
    let shape: [usize; 4] = match shape.as_slice() {
        [n, 2, h, w] if *n > 0 && *h > 0 && *w > 0 => [*n, 2, *h, *w],
        _ => {
            return Err(Error::io(
                path,
                format!("expected float32 cases [N, 2, H, W] with N >= 1, found shape {shape:?}"),
            ));
        }
    };
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        let plane = shape[2] * shape[3];
        return Err(Error::io(
            path,
            format!(
                "case {} channel {} holds a non-finite value ({})",
                i / (2 * plane),
                i / plane % 2,
                data[i]
            ),
        ));
    }
    Ok((shape, data))
}
