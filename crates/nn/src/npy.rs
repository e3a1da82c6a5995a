//! .npy reading and writing (C order, little endian) for exchanging arrays with PyTorch users.
//! Other dtypes and orders are clear errors, never a silent conversion.

use std::path::Path;

use npyz::WriterBuilder;

use crate::error::{NnError, Result};

fn err(path: &Path, msg: impl std::fmt::Display) -> NnError {
    NnError::Input(format!("{}: {msg}", path.display()))
}

/// Where the data of a .npy file starts (after the magic, the version, the header length and
/// the header), or an error for a file too short to hold what its preamble says.
fn data_offset(bytes: &[u8]) -> std::result::Result<usize, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a valid .npy file: no .npy magic string".into());
    }
    let (len_bytes, header_len) = match bytes[6] {
        1 => (2, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (
            4,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        v => return Err(format!("not a valid .npy file: unknown format version {v}")),
    };
    let offset = (8 + len_bytes as u64) + header_len as u64;
    if offset > bytes.len() as u64 {
        return Err(format!(
            "not a valid .npy file: the header claims {header_len} bytes, the file has {}",
            bytes.len()
        ));
    }
    Ok(offset as usize)
}

/// A parsed .npy file: the reader at its data, the dtype string and the shape.
type Opened<'a> = (npyz::NpyFile<&'a [u8]>, String, Vec<usize>);

/// Parses the header and checks it against the data: C order, the dtype `want` (one of
/// `accepted`), a shape whose product neither overflows nor disagrees with the number of data
/// bytes. Nothing is allocated for the data before these checks pass.
fn open<'a>(
    bytes: &'a [u8],
    accepted: &[(&str, usize)],
    expected: &str,
) -> std::result::Result<Opened<'a>, String> {
    let offset = data_offset(bytes)?;
    let npy = npyz::NpyFile::new(bytes).map_err(|e| format!("not a valid .npy file: {e}"))?;
    if npy.order() != npyz::Order::C {
        return Err(
            "Fortran-ordered arrays are not supported; save in numpy's default C order".into(),
        );
    }
    let ts = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => format!("{other:?}"),
    };
    let Some(&(_, item)) = accepted.iter().find(|(t, _)| *t == ts) else {
        return Err(format!("dtype {ts} is not supported; expected {expected}"));
    };
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()
        .ok_or_else(|| format!("shape {:?} is too large for this machine", npy.shape()))?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|n| n.checked_mul(item).is_some())
        .ok_or_else(|| format!("shape {shape:?}: the number of values overflows"))?;
    let have = bytes.len() - offset;
    if count * item != have {
        return Err(format!(
            "shape {shape:?} needs {} bytes of {ts} data, the file holds {have} (truncated or \
             corrupt)",
            count * item
        ));
    }
    Ok((npy, ts, shape))
}

/// A float32 array and its shape from the bytes of a .npy file. The error says what is wrong
/// (without a path).
pub fn decode_f32(bytes: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    let (npy, _, shape) = open(bytes, &[("<f4", 4)], "float32 ('<f4')")?;
    let data = npy
        .into_vec::<f32>()
        .map_err(|e| format!("truncated or corrupt data: {e}"))?;
    Ok((shape, data))
}

/// An int64 or int32 array, as i64, and its shape from the bytes of a .npy file.
pub fn decode_int(bytes: &[u8]) -> std::result::Result<(Vec<usize>, Vec<i64>), String> {
    let (npy, ts, shape) = open(
        bytes,
        &[("<i8", 8), ("<i4", 4)],
        "int64 ('<i8') or int32 ('<i4')",
    )?;
    let data = if ts == "<i8" {
        npy.into_vec::<i64>()
    } else {
        npy.into_vec::<i32>()
            .map(|v| v.into_iter().map(i64::from).collect())
    }
    .map_err(|e| format!("truncated or corrupt data: {e}"))?;
    Ok((shape, data))
}

/// A float32 array and its shape. The file must be a regular file; the error names it.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = crate::io::read_file(path).map_err(NnError::Input)?;
    decode_f32(&bytes).map_err(|e| err(path, e))
}

/// A float32 array that must hold only finite values: NaN or infinity is an error naming the
/// file and how many values are bad.
pub fn read_f32_finite(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let (shape, data) = read_f32(path)?;
    let bad = crate::io::count_non_finite(&data);
    if bad > 0 {
        return Err(err(
            path,
            format!("{bad} of {} values are NaN or infinite", data.len()),
        ));
    }
    Ok((shape, data))
}

/// An int64 or int32 array, as i64, and its shape.
pub fn read_int(path: &Path) -> Result<(Vec<usize>, Vec<i64>)> {
    let bytes = crate::io::read_file(path).map_err(NnError::Input)?;
    decode_int(&bytes).map_err(|e| err(path, e))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 .npy file with the header dict `dict` and `data` after it.
    fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut header = dict.to_string();
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

    #[test]
    fn round_trip() {
        let b = encode_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let (s, d) = decode_f32(&b).unwrap();
        assert_eq!(s, [2, 3]);
        assert_eq!(d[5], 6.0);
    }

    #[test]
    fn a_shape_that_overflows_or_disagrees_with_the_data_is_refused_before_allocating() {
        let huge = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, \
                    4294967296), }";
        let e = decode_f32(&npy_bytes(huge, &[0; 16])).unwrap_err();
        assert!(e.contains("overflows"), "{e}");
        let big = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }";
        let e = decode_f32(&npy_bytes(big, &[0; 16])).unwrap_err();
        assert!(e.contains("the file holds 16"), "{e}");
        let short = "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }";
        let e = decode_int(&npy_bytes(short, &[0; 16])).unwrap_err();
        assert!(e.contains("needs 24 bytes"), "{e}");
        assert!(decode_int(&npy_bytes(short, &[0; 24])).is_ok());
        let e = decode_f32(b"\x93NUMPY\x01\x00\xff\xff{").unwrap_err();
        assert!(e.contains("header claims"), "{e}");
    }

    #[test]
    fn nan_values_are_reported_by_the_finite_reader() {
        let dir = std::env::temp_dir().join(format!("equireg-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("nan.npy");
        write_f32(&p, &[3], &[1.0, f32::NAN, 2.0]).unwrap();
        let e = read_f32_finite(&p).unwrap_err().to_string();
        assert!(e.contains("nan.npy: 1 of 3 values are NaN"), "{e}");
        let e = read_f32(&dir).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
