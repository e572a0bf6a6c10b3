//! PyTorch `.pth` checkpoints (`torch.save` zip format) read without Python: a small pickle
//! machine that understands what a state_dict pickles to (ordered dicts of tensors rebuilt by
//! `torch._utils._rebuild_tensor_v2` over persistent storages), and the raw storages beside it.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};

use super::tensor::{f32s_from_le, Tensor};

#[derive(Clone, Debug)]
enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String),
    Storage {
        key: String,
        dtype: String,
    },
    Tensor {
        storage: Box<Value>,
        offset: usize,
        shape: Vec<usize>,
        stride: Vec<usize>,
    },
    /// Anything else a checkpoint may hold; kept opaque.
    Object,
    Mark,
}

/// The tensors of a state_dict saved with `torch.save`, by name.
pub fn read(bytes: &[u8], what: &str) -> Result<BTreeMap<String, Tensor>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .with_context(|| format!("{what} is not a PyTorch zip checkpoint"))?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_owned))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| anyhow!("{what} has no data.pkl"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_owned();
    let mut pkl = Vec::new();
    zip.by_name(&pkl_name)?.read_to_end(&mut pkl)?;
    let root = unpickle(&pkl).with_context(|| format!("{what}: cannot read {pkl_name}"))?;
    let Value::Dict(items) = root else {
        bail!("{what}: the checkpoint is not a dict of tensors");
    };
    let mut out = BTreeMap::new();
    for (k, v) in items {
        let (
            Value::Str(name),
            Value::Tensor {
                storage,
                offset,
                shape,
                stride,
            },
        ) = (k, v)
        else {
            continue;
        };
        let Value::Storage { key, dtype } = *storage else {
            bail!("{what}: tensor {name} has no storage");
        };
        if dtype != "FloatStorage" {
            bail!("{what}: tensor {name} is {dtype}, expected FloatStorage (float32)");
        }
        let mut raw = Vec::new();
        zip.by_name(&format!("{prefix}data/{key}"))
            .with_context(|| format!("{what}: storage {key} of {name} is missing"))?
            .read_to_end(&mut raw)
            .with_context(|| format!("{what}: storage {key} of {name} is unreadable"))?;
        let storage = f32s_from_le(&raw);
        let data = gather(&storage, offset, &shape, &stride).with_context(|| {
            format!("{what}: tensor {name} lies outside its storage (truncated?)")
        })?;
        out.insert(name, Tensor { shape, data });
    }
    Ok(out)
}

/// The elements of a strided view, in row-major order.
fn gather(storage: &[f32], offset: usize, shape: &[usize], stride: &[usize]) -> Option<Vec<f32>> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        let at = offset + idx.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        out.push(*storage.get(at)?);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Some(out)
}

fn as_usizes(v: &Value) -> Result<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(x) if *x >= 0 => Ok(*x as usize),
                _ => bail!("expected a tuple of sizes"),
            })
            .collect(),
        _ => bail!("expected a tuple of sizes"),
    }
}

fn unpickle(b: &[u8]) -> Result<Value> {
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: BTreeMap<u32, Value> = BTreeMap::new();
    let mut i = 0;
    let take = |i: &mut usize, n: usize| -> Result<&[u8]> {
        let s = b
            .get(*i..*i + n)
            .ok_or_else(|| anyhow!("pickle ends early"))?;
        *i += n;
        Ok(s)
    };
    let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| anyhow!("pickle stack underflow"));
    let pop_mark = |stack: &mut Vec<Value>| -> Result<Vec<Value>> {
        let m = stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| anyhow!("pickle MARK missing"))?;
        let items = stack.split_off(m + 1);
        stack.pop();
        Ok(items)
    };
    loop {
        let op = *take(&mut i, 1)?.first().unwrap();
        match op {
            0x80 => i += 1,                  // PROTO
            0x95 => i += 8,                  // FRAME
            b'.' => return pop(&mut stack),  // STOP
            b'(' => stack.push(Value::Mark), // MARK
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool),
            0x89 => stack.push(Value::Bool),
            b')' => stack.push(Value::Tuple(vec![])),
            b']' => stack.push(Value::List(vec![])),
            b'}' => stack.push(Value::Dict(vec![])),
            b'K' => stack.push(Value::Int(take(&mut i, 1)?[0] as i64)),
            b'M' => {
                let s = take(&mut i, 2)?;
                stack.push(Value::Int(u16::from_le_bytes([s[0], s[1]]) as i64))
            }
            b'J' => {
                let s = take(&mut i, 4)?;
                stack.push(Value::Int(
                    i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as i64
                ))
            }
            0x8a => {
                // LONG1: little-endian two's complement of n bytes
                let n = take(&mut i, 1)?[0] as usize;
                let s = take(&mut i, n)?;
                let mut v: i64 = 0;
                for (k, byte) in s.iter().enumerate().take(8) {
                    v |= (*byte as i64) << (8 * k);
                }
                if n > 0 && n < 8 && s[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(Value::Int(v))
            }
            b'G' => {
                take(&mut i, 8)?;
                stack.push(Value::Float)
            }
            b'X' | 0x8c => {
                // BINUNICODE (u32 length) / SHORT_BINUNICODE (u8 length)
                let n = if op == b'X' {
                    let s = take(&mut i, 4)?;
                    u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize
                } else {
                    take(&mut i, 1)?[0] as usize
                };
                let s = take(&mut i, n)?;
                stack.push(Value::Str(String::from_utf8_lossy(s).into_owned()))
            }
            b'c' => {
                let rest = &b[i..];
                let mut lines = rest.splitn(3, |&c| c == b'\n');
                let module = lines.next().unwrap_or_default();
                let name = lines
                    .next()
                    .ok_or_else(|| anyhow!("pickle GLOBAL cut short"))?;
                i += module.len() + name.len() + 2;
                stack.push(Value::Global(format!(
                    "{} {}",
                    String::from_utf8_lossy(module),
                    String::from_utf8_lossy(name)
                )))
            }
            b'q' => {
                let k = take(&mut i, 1)?[0] as u32;
                memo.insert(
                    k,
                    stack
                        .last()
                        .cloned()
                        .ok_or_else(|| anyhow!("empty stack"))?,
                );
            }
            b'r' => {
                let s = take(&mut i, 4)?;
                let k = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                memo.insert(
                    k,
                    stack
                        .last()
                        .cloned()
                        .ok_or_else(|| anyhow!("empty stack"))?,
                );
            }
            0x94 => {
                // MEMOIZE
                let k = memo.len() as u32;
                memo.insert(
                    k,
                    stack
                        .last()
                        .cloned()
                        .ok_or_else(|| anyhow!("empty stack"))?,
                );
            }
            b'h' | b'j' => {
                let k = if op == b'h' {
                    take(&mut i, 1)?[0] as u32
                } else {
                    let s = take(&mut i, 4)?;
                    u32::from_le_bytes([s[0], s[1], s[2], s[3]])
                };
                stack.push(
                    memo.get(&k)
                        .cloned()
                        .ok_or_else(|| anyhow!("pickle memo {k} missing"))?,
                )
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items))
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    bail!("pickle stack underflow");
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items))
            }
            b'a' => {
                let v = pop(&mut stack)?;
                if let Some(Value::List(l)) = stack.last_mut() {
                    l.push(v);
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                if let Some(Value::List(l)) = stack.last_mut() {
                    l.extend(items);
                }
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let v = pop(&mut stack)?;
                    let k = pop(&mut stack)?;
                    vec![k, v]
                } else {
                    pop_mark(&mut stack)?
                };
                if let Some(Value::Dict(d)) = stack.last_mut() {
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
            }
            b'b' => {
                pop(&mut stack)?; // BUILD: state (e.g. _metadata) is not needed
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                let Value::Tuple(p) = pid else {
                    bail!("unexpected persistent id")
                };
                match (p.first(), p.get(1), p.get(2)) {
                    (Some(Value::Str(kind)), Some(Value::Global(g)), Some(Value::Str(key)))
                        if kind == "storage" =>
                    {
                        let dtype = g.rsplit(' ').next().unwrap_or_default().to_string();
                        stack.push(Value::Storage {
                            key: key.clone(),
                            dtype,
                        })
                    }
                    _ => bail!("unexpected persistent id {p:?}"),
                }
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let f = pop(&mut stack)?;
                let Value::Tuple(args) = args else {
                    bail!("REDUCE without an argument tuple")
                };
                stack.push(match &f {
                    Value::Global(g)
                        if g == "torch._utils _rebuild_tensor_v2"
                            || g == "torch._utils _rebuild_tensor" =>
                    {
                        let storage = args
                            .first()
                            .cloned()
                            .ok_or_else(|| anyhow!("tensor without storage"))?;
                        let offset = match args.get(1) {
                            Some(Value::Int(o)) if *o >= 0 => *o as usize,
                            _ => bail!("tensor without offset"),
                        };
                        let shape = as_usizes(args.get(2).unwrap_or(&Value::None))?;
                        let stride = as_usizes(args.get(3).unwrap_or(&Value::None))?;
                        if shape.len() != stride.len() {
                            bail!("tensor shape and stride differ in rank");
                        }
                        Value::Tensor {
                            storage: Box::new(storage),
                            offset,
                            shape,
                            stride,
                        }
                    }
                    Value::Global(g) if g == "collections OrderedDict" => Value::Dict(vec![]),
                    _ => Value::Object,
                })
            }
            _ => bail!("unsupported pickle opcode 0x{op:02x} at byte {}", i - 1),
        }
    }
}
