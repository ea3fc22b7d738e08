//! Real inputs from `.npy` / `.npz` files (stored zip members only).

use super::*;
use inputs::tensor_of;

/// One array from a `.npy` file: shape and values.
pub(crate) fn parse_npy(bytes: &[u8], what: &str) -> Result<(Vec<usize>, Vec<f64>)> {
    let bad = |m: &str| Error::model(format!("{what}: {m}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy array"));
    }
    let (hlen, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Err(bad("unsupported .npy version")),
    };
    let header = bytes.get(start..start.saturating_add(hlen)).ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))? + key.len() + 2;
        Some(header[i..].trim_start().strip_prefix(':')?.trim_start())
    };
    let descr = field("descr")
        .and_then(|s| s.strip_prefix('\''))
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| bad("no dtype"))?;
    if field("fortran_order").is_some_and(|s| s.starts_with("True")) {
        return Err(bad("Fortran-ordered arrays are not supported (use np.ascontiguousarray)"));
    }
    let shape_s = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(|d| d.trim())
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape overflows"))?;
    let data = &bytes[start + hlen..];
    let size = match descr {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        "<f2" => 2,
        "|u1" | "|i1" | "|b1" => 1,
        d => return Err(bad(&format!("dtype '{d}' is not supported (use float32)"))),
    };
    if data.len() != n.checked_mul(size).ok_or_else(|| bad("shape overflows"))? {
        return Err(bad("data length does not match the shape"));
    }
    let v: Vec<f64> = match descr {
        "<f4" => data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        "<f8" => data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        "<i4" => data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        "<i8" => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        "<f2" => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
        "|i1" => data.iter().map(|&x| x as i8 as f64).collect(),
        _ => data.iter().map(|&x| x as f64).collect(),
    };
    Ok((shape, v))
}

/// The stored (uncompressed) members of a zip archive, as `np.savez` writes it.
pub(crate) fn unzip(bytes: &[u8], what: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let bad = |m: &str| Error::model(format!("{what}: {m}"));
    let u16_at = |i: usize| bytes.get(i..i + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64);
    let u64_at = |i: usize| bytes.get(i..i + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    let eocd = (0..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(i) == Some(0x0605_4b50))
        .ok_or_else(|| bad("not a .npz (zip) file"))?;
    let count = u16_at(eocd + 10).ok_or_else(|| bad("truncated"))?;
    let mut p = u32_at(eocd + 16).ok_or_else(|| bad("truncated"))? as usize;
    let mut out = vec![];
    for _ in 0..count {
        if u32_at(p) != Some(0x0201_4b50) {
            return Err(bad("broken zip directory"));
        }
        let trunc = || bad("truncated");
        let method = u16_at(p + 10).ok_or_else(trunc)?;
        let mut csize = u32_at(p + 20).ok_or_else(trunc)?;
        let mut usize_ = u32_at(p + 24).ok_or_else(trunc)?;
        let (nlen, elen, clen) =
            (u16_at(p + 28).ok_or_else(trunc)?, u16_at(p + 30).ok_or_else(trunc)?, u16_at(p + 32).ok_or_else(trunc)?);
        let mut off = u32_at(p + 42).ok_or_else(trunc)?;
        let name = String::from_utf8_lossy(bytes.get(p + 46..p + 46 + nlen).ok_or_else(trunc)?).to_string();
        // zip64 extra field: the 0xFFFFFFFF fields, in order
        let mut e = p + 46 + nlen;
        let end = e + elen;
        while e + 4 <= end {
            let (id, len) = (u16_at(e).ok_or_else(trunc)?, u16_at(e + 2).ok_or_else(trunc)?);
            if id == 1 {
                let mut q = e + 4;
                for f in [&mut usize_, &mut csize, &mut off] {
                    if *f == 0xFFFF_FFFF {
                        *f = u64_at(q).ok_or_else(trunc)?;
                        q += 8;
                    }
                }
            }
            e += 4 + len;
        }
        if method != 0 {
            return Err(bad("compressed .npz (np.savez_compressed) is not supported; write it with np.savez"));
        }
        let off = off as usize;
        if u32_at(off) != Some(0x0403_4b50) {
            return Err(bad("broken zip entry"));
        }
        let data_at = off + 30 + u16_at(off + 26).ok_or_else(trunc)? + u16_at(off + 28).ok_or_else(trunc)?;
        let data = bytes.get(data_at..data_at.saturating_add(csize as usize)).ok_or_else(trunc)?;
        out.push((name, data.to_vec()));
        p += 46 + nlen + elen + clen;
    }
    Ok(out)
}

/// Input sets from a `.npy` / `.npz` file: an array of the input's shape is
/// one set; one with an extra leading axis of K is K sets.
pub fn read_inputs(path: &Path, specs: &[InputSpec]) -> Result<Vec<Vec<Tensor>>> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::model(format!("{what}: {e}")))?;
    let arrays: Vec<(String, Vec<usize>, Vec<f64>)> = if bytes.starts_with(b"\x93NUMPY") {
        if specs.len() != 1 {
            return Err(Error::model(format!(
                "{what}: the model has {} inputs; give an .npz with one array per input name",
                specs.len()
            )));
        }
        let (s, v) = parse_npy(&bytes, &what)?;
        vec![(specs[0].name.clone(), s, v)]
    } else {
        unzip(&bytes, &what)?
            .into_iter()
            .map(|(n, b)| {
                let n = n.strip_suffix(".npy").unwrap_or(&n).to_string();
                let (s, v) = parse_npy(&b, &format!("{what}: '{n}'"))?;
                Ok((n, s, v))
            })
            .collect::<Result<_>>()?
    };
    let mut sets: Vec<Vec<Tensor>> = vec![];
    let mut k_sets: Option<usize> = None;
    for (i, spec) in specs.iter().enumerate() {
        let (_, shape, v) = arrays.iter().find(|(n, ..)| *n == spec.name).ok_or_else(|| {
            Error::model(format!(
                "{what} has no array named '{}' (arrays: {})",
                spec.name,
                arrays.iter().map(|a| a.0.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let k = if *shape == spec.shape {
            1
        } else if shape.len() == spec.shape.len() + 1 && shape[1..] == spec.shape[..] {
            shape[0]
        } else {
            return Err(Error::model(format!(
                "{what}: '{}' has shape {shape:?}; the model takes {:?} (or K sets of it: [K, ...])",
                spec.name, spec.shape
            )));
        };
        if k == 0 || k_sets.is_some_and(|n| n != k) {
            return Err(Error::model(format!("{what}: the arrays hold different numbers of input sets")));
        }
        k_sets = Some(k);
        let per = v.len() / k;
        for s in 0..k {
            if i == 0 {
                sets.push(vec![]);
            }
            sets[s].push(tensor_of(spec, &v[s * per..(s + 1) * per])?);
        }
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b.extend(data);
        b
    }

    #[test]
    fn npy_arrays_parse_and_bad_ones_are_refused() {
        let data: Vec<u8> = [1.5f32, -2.0, 0.25, 8.0, 0.0, 1.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let (s, v) = parse_npy(&npy("<f4", "(2, 3)", &data), "x.npy").unwrap();
        assert_eq!(s, vec![2, 3]);
        assert_eq!(v, vec![1.5, -2.0, 0.25, 8.0, 0.0, 1.0]);
        assert!(parse_npy(&npy("<f4", "(2, 4)", &data), "x.npy").unwrap_err().msg.contains("does not match"));
        assert!(parse_npy(&npy(">f4", "(2, 3)", &data), "x.npy").unwrap_err().msg.contains("not supported"));
        assert!(parse_npy(b"garbage", "x.npy").is_err());
    }

    /// A zip with stored (uncompressed) members, as `np.savez` writes it.
    fn zip(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let (mut out, mut dir) = (vec![], vec![]);
        for (name, data) in members {
            let off = out.len() as u32;
            let head = |sig: u32, central: bool| {
                let mut h = sig.to_le_bytes().to_vec();
                if central {
                    h.extend(20u16.to_le_bytes()); // version made by
                }
                h.extend(20u16.to_le_bytes()); // version needed
                h.extend([0u8; 4]); // flags, method 0 (stored)
                h.extend([0u8; 4]); // time, date
                h.extend([0u8; 4]); // crc (not checked)
                h.extend((data.len() as u32).to_le_bytes());
                h.extend((data.len() as u32).to_le_bytes());
                h.extend((name.len() as u16).to_le_bytes());
                h.extend(0u16.to_le_bytes()); // extra
                if central {
                    h.extend([0u8; 6]); // comment length, disk, internal attributes
                    h.extend([0u8; 4]); // external attributes
                    h.extend(off.to_le_bytes());
                }
                h.extend(name.as_bytes());
                h
            };
            out.extend(head(0x0403_4b50, false));
            out.extend(data);
            dir.extend(head(0x0201_4b50, true));
        }
        let at = out.len() as u32;
        out.extend(&dir);
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0u8; 4]);
        out.extend((members.len() as u16).to_le_bytes());
        out.extend((members.len() as u16).to_le_bytes());
        out.extend((dir.len() as u32).to_le_bytes());
        out.extend(at.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    #[test]
    fn npz_members_are_input_sets_by_name() {
        let f32s = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let specs = vec![
            InputSpec { name: "a".into(), shape: vec![1, 2], elem: 1 },
            InputSpec { name: "b".into(), shape: vec![3], elem: 1 },
        ];
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.npz");
        // two sets: a leading axis of 2 on both arrays
        let z = zip(&[
            ("b.npy", npy("<f4", "(2, 3)", &f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))),
            ("a.npy", npy("<f4", "(2, 1, 2)", &f32s(&[0.5, -0.5, 0.25, -0.25]))),
        ]);
        std::fs::write(&p, &z).unwrap();
        let sets = read_inputs(&p, &specs).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(
            sets[1][0].to_plain_array_view::<f32>().unwrap().iter().copied().collect::<Vec<_>>(),
            vec![0.25, -0.25]
        );
        assert_eq!(
            sets[1][1].to_plain_array_view::<f32>().unwrap().iter().copied().collect::<Vec<_>>(),
            vec![4.0, 5.0, 6.0]
        );
        // a missing array and a mismatched set count are input errors naming the file
        std::fs::write(&p, zip(&[("a.npy", npy("<f4", "(1, 2)", &f32s(&[0.5, -0.5])))])).unwrap();
        let e = read_inputs(&p, &specs).unwrap_err();
        assert!(e.msg.contains("x.npz") && e.msg.contains("no array named 'b'"), "{e}");
        std::fs::write(
            &p,
            zip(&[
                ("a.npy", npy("<f4", "(2, 1, 2)", &f32s(&[0.5, -0.5, 0.25, -0.25]))),
                ("b.npy", npy("<f4", "(3,)", &f32s(&[1.0, 2.0, 3.0]))),
            ]),
        )
        .unwrap();
        assert!(read_inputs(&p, &specs).unwrap_err().msg.contains("different numbers of input sets"));
        std::fs::write(&p, b"PK not really").unwrap();
        assert!(read_inputs(&p, &specs).is_err());
    }
}
