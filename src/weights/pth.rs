//! PyTorch `.pth` checkpoints (`torch.save` zip format) read without Python: a small pickle
//! machine that understands what a state_dict pickles to (ordered dicts of tensors rebuilt by
//! `torch._utils._rebuild_tensor_v2` over persistent storages), and the raw storages beside it.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};

use super::tensor::{f32s_from_le, Tensor};

/// The globals a state_dict's pickle needs: the tensor rebuild functions, the storage types
/// (named in persistent ids) and the ordered dict. Any other global (`os.system`,
/// `builtins.eval`, ...) is refused by name: nothing in a pickle is ever executed here, and a
/// file that asks for more than a state_dict holds is not one.
const ALLOWED_GLOBALS: &[&str] = &[
    "torch._utils _rebuild_tensor_v2",
    "torch._utils _rebuild_tensor",
    "torch._utils _rebuild_parameter",
    "collections OrderedDict",
];

/// torch's storage types, `torch XStorage`.
fn is_storage_type(global: &str) -> bool {
    global
        .strip_prefix("torch ")
        .is_some_and(|n| n.ends_with("Storage") && n.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Limits checked before anything is allocated.
mod limits {
    /// data.pkl: a state_dict's pickle is kilobytes.
    pub const PICKLE_BYTES: u64 = 64 << 20;
    /// One storage's bytes (VGG19's largest tensor is 400 MiB).
    pub const STORAGE_BYTES: u64 = 2 << 30;
    /// Containers inside containers.
    pub const DEPTH: usize = 64;
    /// Values built in all (memo gets copy values: this bounds a "billion laughs").
    pub const NODES: usize = 10_000_000;
    /// Dimensions of a tensor.
    pub const RANK: usize = 8;
}

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
    let pkl = read_entry(
        &mut zip,
        &pkl_name,
        limits::PICKLE_BYTES,
        bytes.len() as u64,
    )
    .with_context(|| format!("{what}: {pkl_name}"))?;
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
        let raw = read_entry(
            &mut zip,
            &format!("{prefix}data/{key}"),
            limits::STORAGE_BYTES,
            bytes.len() as u64,
        )
        .with_context(|| format!("{what}: storage {key} of tensor {name}"))?;
        let storage = f32s_from_le(&raw);
        let data = gather(&storage, offset, &shape, &stride).with_context(|| {
            format!("{what}: tensor {name} lies outside its storage (truncated?)")
        })?;
        out.insert(name, Tensor { shape, data });
    }
    Ok(out)
}

/// The bytes of one archive entry, refused past `limit` or past what the entry declares
/// (read with a bound, so a lying header cannot make it allocate more).
fn read_entry(
    zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>, name: &str, limit: u64, archive_bytes: u64,
) -> Result<Vec<u8>> {
    let entry = zip.by_name(name).map_err(|e| anyhow!("missing ({e})"))?;
    let declared = entry.size();
    if declared > limit {
        bail!("declares {declared} bytes, more than the {limit} accepted");
    }
    // Deflate packs at most ~1032:1; an entry claiming more is a bomb or a lie.
    if declared > entry.compressed_size().saturating_mul(1100) {
        bail!(
            "declares {declared} bytes from {} compressed ones",
            entry.compressed_size()
        );
    }
    // Grown as data arrives, never reserved on the header's word alone.
    let mut out = Vec::with_capacity(declared.min(archive_bytes) as usize);
    entry
        .take(declared + 1)
        .read_to_end(&mut out)
        .map_err(|e| anyhow!("unreadable ({e})"))?;
    if out.len() as u64 != declared {
        bail!(
            "holds {} bytes where it declares {declared} (corrupt?)",
            out.len()
        );
    }
    Ok(out)
}

/// The elements of a strided view, in row-major order; None when the view does not fit in
/// the storage.
fn gather(storage: &[f32], offset: usize, shape: &[usize], stride: &[usize]) -> Option<Vec<f32>> {
    let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
    // The last element a view reaches, computed without overflow, must lie in the storage.
    let last = shape.iter().zip(stride).try_fold(offset, |at, (&d, &s)| {
        at.checked_add(d.saturating_sub(1).checked_mul(s)?)
    })?;
    if n > 0 && last >= storage.len() {
        return None;
    }
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

/// A value on the pickle machine's stack, with how deep its containers nest and how many
/// values it holds, so that limits are checked in O(1) per opcode.
#[derive(Clone)]
struct Item {
    value: Value,
    depth: usize,
    nodes: usize,
}

/// A pickle interpreter for data only: it builds values, calls nothing, and accepts only the
/// globals in [`ALLOWED_GLOBALS`] (and torch's storage types).
struct Machine<'a> {
    b: &'a [u8],
    i: usize,
    stack: Vec<Item>,
    memo: BTreeMap<u32, Item>,
    nodes: usize,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let b: &'a [u8] = self.b;
        let s = b
            .get(self.i..self.i.saturating_add(n))
            .ok_or_else(|| anyhow!("pickle ends early"))?;
        self.i += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn pop(&mut self) -> Result<Item> {
        self.stack
            .pop()
            .ok_or_else(|| anyhow!("pickle stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Item>> {
        let m = self
            .stack
            .iter()
            .rposition(|v| matches!(v.value, Value::Mark))
            .ok_or_else(|| anyhow!("pickle MARK missing"))?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items)
    }

    /// Pushes `value` holding `children`, within the limits.
    fn push(&mut self, value: Value, children: &[&Item]) -> Result<()> {
        let depth = children.iter().map(|c| c.depth + 1).max().unwrap_or(0);
        let nodes = children.iter().map(|c| c.nodes).sum::<usize>() + 1;
        self.count(1)?;
        if depth > limits::DEPTH {
            bail!("pickle nests deeper than {}", limits::DEPTH);
        }
        self.stack.push(Item {
            value,
            depth,
            nodes,
        });
        Ok(())
    }

    fn count(&mut self, nodes: usize) -> Result<()> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > limits::NODES {
            bail!("pickle builds more than {} values", limits::NODES);
        }
        Ok(())
    }

    fn memo_put(&mut self, k: u32) -> Result<()> {
        let top = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| anyhow!("empty stack"))?;
        self.memo.insert(k, top);
        Ok(())
    }

    /// Adds `items` to the container on top of the stack (lists: values; dicts: key, value pairs).
    fn extend_top(&mut self, items: Vec<Item>) -> Result<()> {
        let depth = items.iter().map(|c| c.depth + 1).max().unwrap_or(0);
        let nodes: usize = items.iter().map(|c| c.nodes).sum();
        let top = self
            .stack
            .last_mut()
            .ok_or_else(|| anyhow!("pickle stack underflow"))?;
        top.depth = top.depth.max(depth);
        top.nodes += nodes;
        if top.depth > limits::DEPTH {
            bail!("pickle nests deeper than {}", limits::DEPTH);
        }
        match &mut top.value {
            Value::List(l) => l.extend(items.into_iter().map(|i| i.value)),
            Value::Dict(d) => {
                let mut it = items.into_iter().map(|i| i.value);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A global, refused unless a state_dict needs it.
    fn global(&mut self, module: &str, name: &str) -> Result<()> {
        let g = format!("{module} {name}");
        if !ALLOWED_GLOBALS.contains(&g.as_str()) && !is_storage_type(&g) {
            bail!(
                "the pickle names the global {module}.{name}, which a PyTorch state_dict never \
                 needs; refused (nothing in it was run)"
            );
        }
        self.push(Value::Global(g), &[])
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let op = self.take(1)?[0];
            match op {
                0x80 => self.i += 1,                  // PROTO
                0x95 => self.i += 8,                  // FRAME
                b'.' => return Ok(self.pop()?.value), // STOP
                b'(' => self.push(Value::Mark, &[])?, // MARK
                b'N' => self.push(Value::None, &[])?,
                0x88 | 0x89 => self.push(Value::Bool, &[])?,
                b')' => self.push(Value::Tuple(vec![]), &[])?,
                b']' => self.push(Value::List(vec![]), &[])?,
                b'}' => self.push(Value::Dict(vec![]), &[])?,
                b'K' => {
                    let v = self.take(1)?[0] as i64;
                    self.push(Value::Int(v), &[])?
                }
                b'M' => {
                    let s = self.take(2)?;
                    self.push(Value::Int(u16::from_le_bytes([s[0], s[1]]) as i64), &[])?
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v), &[])?
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes
                    let n = self.take(1)?[0] as usize;
                    let s = self.take(n)?;
                    let mut v: i64 = 0;
                    for (k, byte) in s.iter().enumerate().take(8) {
                        v |= (*byte as i64) << (8 * k);
                    }
                    if n > 0 && n < 8 && s[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Value::Int(v), &[])?
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Float, &[])?
                }
                b'X' | 0x8c => {
                    // BINUNICODE (u32 length) / SHORT_BINUNICODE (u8 length)
                    let n = if op == b'X' {
                        self.u32()? as usize
                    } else {
                        self.take(1)?[0] as usize
                    };
                    let s = self.take(n)?;
                    self.push(Value::Str(String::from_utf8_lossy(s).into_owned()), &[])?
                }
                b'c' => {
                    // GLOBAL: "module\nname\n"
                    let rest = &self.b[self.i..];
                    let mut lines = rest.splitn(3, |&c| c == b'\n');
                    let module = lines.next().unwrap_or_default();
                    let name = lines
                        .next()
                        .ok_or_else(|| anyhow!("pickle GLOBAL cut short"))?;
                    self.i += module.len() + name.len() + 2;
                    let (m, n) = (
                        String::from_utf8_lossy(module),
                        String::from_utf8_lossy(name),
                    );
                    self.global(&m, &n)?
                }
                0x93 => {
                    // STACK_GLOBAL: module and name strings on the stack
                    let name = self.pop()?.value;
                    let module = self.pop()?.value;
                    let (Value::Str(m), Value::Str(n)) = (module, name) else {
                        bail!("pickle STACK_GLOBAL without two strings");
                    };
                    self.global(&m, &n)?
                }
                b'q' => {
                    let k = self.take(1)?[0] as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => self.memo_put(self.memo.len() as u32)?, // MEMOIZE
                b'h' | b'j' => {
                    let k = if op == b'h' {
                        self.take(1)?[0] as u32
                    } else {
                        self.u32()?
                    };
                    let item = self
                        .memo
                        .get(&k)
                        .cloned()
                        .ok_or_else(|| anyhow!("pickle memo {k} missing"))?;
                    self.count(item.nodes)?;
                    self.stack.push(item)
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let refs: Vec<&Item> = items.iter().collect();
                    let v = Value::Tuple(items.iter().map(|i| i.value.clone()).collect());
                    self.push(v, &refs)?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        bail!("pickle stack underflow");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let refs: Vec<&Item> = items.iter().collect();
                    let v = Value::Tuple(items.iter().map(|i| i.value.clone()).collect());
                    self.push(v, &refs)?
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend_top(vec![v])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_top(items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.extend_top(vec![k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.extend_top(items)?
                }
                b'b' => {
                    self.pop()?; // BUILD: state (e.g. _metadata) is not needed
                }
                b'Q' => {
                    let pid = self.pop()?.value;
                    let Value::Tuple(p) = pid else {
                        bail!("unexpected persistent id")
                    };
                    match (p.first(), p.get(1), p.get(2)) {
                        (Some(Value::Str(kind)), Some(Value::Global(g)), Some(Value::Str(key)))
                            if kind == "storage" && is_storage_type(g) =>
                        {
                            let dtype = g.rsplit(' ').next().unwrap_or_default().to_string();
                            self.push(
                                Value::Storage {
                                    key: key.clone(),
                                    dtype,
                                },
                                &[],
                            )?
                        }
                        _ => bail!("unexpected persistent id {p:?}"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let size = Item {
                        value: Value::None,
                        depth: args.depth,
                        nodes: args.nodes,
                    };
                    let v = reduce(&f.value, args.value)?;
                    self.push(v, &[&size])?
                }
                _ => bail!(
                    "unsupported pickle opcode 0x{op:02x} at byte {}",
                    self.i - 1
                ),
            }
        }
    }
}

/// What an allowed global builds from its arguments.
fn reduce(f: &Value, args: Value) -> Result<Value> {
    let Value::Tuple(args) = args else {
        bail!("REDUCE without an argument tuple")
    };
    Ok(match f {
        Value::Global(g)
            if g == "torch._utils _rebuild_tensor_v2" || g == "torch._utils _rebuild_tensor" =>
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
            if shape.len() != stride.len() || shape.len() > limits::RANK {
                bail!("tensor of shape {shape:?} and stride {stride:?}");
            }
            Value::Tensor {
                storage: Box::new(storage),
                offset,
                shape,
                stride,
            }
        }
        // A Parameter wraps its tensor; the tensor is what is kept.
        Value::Global(g) if g == "torch._utils _rebuild_parameter" => args
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("parameter without tensor"))?,
        Value::Global(g) if g == "collections OrderedDict" => Value::Dict(vec![]),
        _ => bail!("REDUCE of something that is not an allowed global"),
    })
}

fn unpickle(b: &[u8]) -> Result<Value> {
    Machine {
        b,
        i: 0,
        stack: Vec::new(),
        memo: BTreeMap::new(),
        nodes: 0,
    }
    .run()
}
