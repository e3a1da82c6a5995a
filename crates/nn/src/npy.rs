//! .npy reading and writing (C order, little endian) for exchanging arrays with PyTorch users.
//! Other dtypes and orders are clear errors, never a silent conversion.

use std::path::Path;

use npyz::WriterBuilder;

use crate::error::{NnError, Result};

fn err(path: &Path, msg: impl std::fmt::Display) -> NnError {
    NnError::Input(format!("{}: {msg}", path.display()))
}

fn open(path: &Path) -> Result<npyz::NpyFile<std::io::BufReader<std::fs::File>>> {
    let f = std::fs::File::open(path).map_err(|e| err(path, format!("cannot open: {e}")))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(f))
        .map_err(|e| err(path, format!("not a valid .npy file: {e}")))?;
    if npy.order() != npyz::Order::C {
        return Err(err(
            path,
            "Fortran-ordered arrays are not supported; save in numpy's default C order",
        ));
    }
    Ok(npy)
}

fn type_str(npy: &npyz::NpyFile<impl std::io::Read>) -> String {
    match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => format!("{other:?}"),
    }
}

fn shape(npy: &npyz::NpyFile<impl std::io::Read>) -> Vec<usize> {
    npy.shape().iter().map(|&d| d as usize).collect()
}

/// A float32 array and its shape.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let npy = open(path)?;
    let ts = type_str(&npy);
    if ts != "<f4" {
        return Err(err(
            path,
            format!("dtype {ts} is not supported; expected float32 ('<f4')"),
        ));
    }
    let shape = shape(&npy);
    let data = npy
        .into_vec::<f32>()
        .map_err(|e| err(path, format!("truncated or corrupt data: {e}")))?;
    Ok((shape, data))
}

/// An int64 or int32 array, as i64, and its shape.
pub fn read_int(path: &Path) -> Result<(Vec<usize>, Vec<i64>)> {
    let npy = open(path)?;
    let ts = type_str(&npy);
    let shape = shape(&npy);
    let data = match ts.as_str() {
        "<i8" => npy.into_vec::<i64>(),
        "<i4" => npy
            .into_vec::<i32>()
            .map(|v| v.into_iter().map(i64::from).collect()),
        _ => {
            return Err(err(
                path,
                format!("dtype {ts} is not supported; expected int64 ('<i8') or int32 ('<i4')"),
            ));
        }
    }
    .map_err(|e| err(path, format!("truncated or corrupt data: {e}")))?;
    Ok((shape, data))
}

/// A float32 .npy file as bytes.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let io = |e: std::io::Error| NnError::Input(format!("encoding .npy: {e}"));
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut bytes)
        .begin_nd()
        .map_err(io)?;
    w.extend(data.iter().copied()).map_err(io)?;
    w.finish().map_err(io)?;
    Ok(bytes)
}

/// Writes a float32 array atomically (a temporary file renamed into place).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let bytes = encode_f32(shape, data)?;
    crate::io::write_atomic(path, &bytes).map_err(|e| err(path, format!("cannot write: {e}")))
}
