//! Conversions between Python values and the library's: pictures (a path, read by the
//! command's hostile-file-safe readers, or a numpy array), masks, the result as a numpy
//! array, settings' values as command-line text, JSON as Python objects.

use std::path::PathBuf;

use anyhow::Context;
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyList, PyString, PyTuple};

use impasto::job::{open_image, Image, Original, StyleMask};

use crate::errors::{bad_setting, failure};

/// A setting's value as the command line writes it (the parser then checks it as a flag).
pub fn setting_text(v: &Bound<'_, PyAny>) -> Result<String, String> {
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(b.is_true().to_string());
    }
    if v.is_instance_of::<PyInt>() || v.is_instance_of::<PyString>() {
        return Ok(v.str().map_err(|e| e.to_string())?.to_string());
    }
    if v.is_instance_of::<PyFloat>() {
        // Rust's shortest text that reads back as the same f64.
        return Ok(v.extract::<f64>().map_err(|e| e.to_string())?.to_string());
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let items: Vec<String> = (v.try_iter().map_err(|e| e.to_string())?)
            .map(|item| setting_text(&item.map_err(|e| e.to_string())?))
            .collect::<Result<_, _>>()?;
        return Ok(items.join(","));
    }
    if let Ok(path) = v.extract::<PathBuf>() {
        return Ok(path.to_string_lossy().into_owned());
    }
    let type_name = v
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    Err(format!(
        "a {type_name} is not a setting's value (a number, a string, a bool, a path or a list of them)"
    ))
}

/// An array's shape and values in [0, 1]: uint8 levels over 255, floats as they are (values
/// outside [0, 1] refused). None: not a numpy array.
fn values(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Option<(Vec<usize>, Vec<f32>)>> {
    let py = obj.py();
    let Ok(untyped) = obj.cast::<PyUntypedArray>() else {
        return Ok(None);
    };
    let shape = untyped.shape().to_vec();
    let values: Vec<f32> = if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, u8>>() {
        a.as_array().iter().map(|&v| v as f32 / 255.0).collect()
    } else if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, f32>>() {
        a.as_array().iter().copied().collect()
    } else if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'_, f64>>() {
        a.as_array().iter().map(|&v| v as f32).collect()
    } else {
        let dtype = untyped
            .dtype()
            .str()
            .map(|s| s.to_string())
            .unwrap_or_default();
        return Err(bad_setting(
            py,
            format!("{what}: an array of dtype {dtype}; give uint8 (0-255) or float (0-1) values"),
        ));
    };
    if let Some(v) = values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        return Err(bad_setting(
            py,
            format!("{what}: a float array's values must be in [0, 1] (found {v})"),
        ));
    }
    Ok(Some((shape, values)))
}

/// A picture: a path (str or os.PathLike) read as the command reads files, or an (H, W, 3)
/// array of uint8 or of floats in [0, 1].
pub fn picture(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Original> {
    let py = obj.py();
    if let Some((shape, values)) = values(obj, what)? {
        let [h, w, 3] = shape[..] else {
            return Err(bad_setting(
                py,
                format!(
                    "{what}: an array of shape {shape:?}; a picture is (height, width, 3), RGB"
                ),
            ));
        };
        // 8 bits a channel, as a picture read from a file.
        let levels = values.iter().map(|v| (v * 255.0).round() as u8).collect();
        return Original::from_pixels(w, h, levels)
            .ok_or_else(|| bad_setting(py, format!("{what}: an empty picture")));
    }
    let path = path_of(obj, what)?;
    open_image(&path).map_err(|e| failure(py, anyhow::Error::new(e).context(what.to_string())))
}

/// Style `i`'s mask: a path to a grayscale image, or an (H, W) or (H, W, 1) array (white or
/// 1: the style applies fully).
pub fn mask(obj: &Bound<'_, PyAny>, i: usize) -> PyResult<StyleMask> {
    let py = obj.py();
    let what = format!("style_masks[{i}]");
    if let Some((shape, values)) = values(obj, &what)? {
        let (h, w) = match shape[..] {
            [h, w] | [h, w, 1] => (h, w),
            _ => {
                return Err(bad_setting(
                    py,
                    format!("{what}: an array of shape {shape:?}; a mask is (height, width)"),
                ))
            }
        };
        return StyleMask::from_values(w, h, values, format!("{what} (an array)"))
            .ok_or_else(|| bad_setting(py, format!("{what}: an empty mask")));
    }
    let path = path_of(obj, &what)?;
    StyleMask::open(&path).map_err(|e| failure(py, anyhow::Error::new(e).context(what)))
}

fn path_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<PathBuf> {
    if obj.is_instance_of::<PyString>() || obj.hasattr("__fspath__")? {
        return obj
            .extract::<PathBuf>()
            .context(what.to_string())
            .map_err(|e| failure(obj.py(), e));
    }
    let type_name = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    Err(bad_setting(
        obj.py(),
        format!("{what}: a {type_name}; give a path, a PIL image or a numpy array"),
    ))
}

/// A picture as a numpy float32 array (height, width, 3), clamped to [0, 1] as files are.
pub fn to_array<'py>(py: Python<'py>, img: &Image) -> PyResult<Bound<'py, PyAny>> {
    let plane = img.h * img.w;
    let mut hwc = vec![0f32; 3 * plane];
    for (c, channel) in img.data.chunks_exact(plane).enumerate() {
        for (i, v) in channel.iter().enumerate() {
            hwc[3 * i + c] = v.clamp(0.0, 1.0);
        }
    }
    Ok(PyArray1::from_vec(py, hwc)
        .reshape([img.h, img.w, 3])?
        .into_any())
}

/// A JSON value as Python's json module reads it.
pub fn from_json<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (v.to_string(),))
}
