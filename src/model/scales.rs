//! Coarse to fine (`--min-size`): the picture is optimised at a few sizes, smallest first,
//! each starting from the previous one's result upsampled. The coarse scales settle the
//! large-scale structure of the style cheaply (VGG's receptive fields cover more of a small
//! image), the fine ones its detail. As in crowsonkb/style-transfer-pytorch.

/// One scale of a run: the longest side and the steps spent there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    pub size: usize,
    pub steps: u64,
}

/// Longest sides `size / √2^i` (rounded) for i = 0, 1, ... while at least `min_size`,
/// smallest first; the last is exactly `size`, and `min_size ≥ size` gives that one scale.
/// The first scale takes `initial_steps`, the others `steps`.
pub fn schedule(min_size: usize, size: usize, initial_steps: u64, steps: u64) -> Vec<Scale> {
    let mut sizes = vec![size];
    for i in 1.. {
        let s = (size as f64 / 2f64.powf(i as f64 / 2.0)).round() as usize;
        if s < min_size.max(1) || s == 0 {
            break;
        }
        if s != *sizes.last().unwrap() {
            sizes.push(s);
        }
    }
    sizes.reverse();
    sizes
        .into_iter()
        .enumerate()
        .map(|(i, size)| Scale {
            size,
            steps: if i == 0 { initial_steps } else { steps },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_go_up_by_root_two_to_the_size() {
        let sizes = |min, size| -> Vec<usize> {
            schedule(min, size, 0, 0).iter().map(|s| s.size).collect()
        };
        // crowsonkb's defaults: 128 up to 512.
        assert_eq!(sizes(128, 512), [128, 181, 256, 362, 512]);
        assert_eq!(sizes(100, 512), [128, 181, 256, 362, 512]);
        assert_eq!(sizes(129, 512), [181, 256, 362, 512]);
        assert_eq!(sizes(512, 512), [512]);
        assert_eq!(sizes(600, 512), [512]);
        assert_eq!(sizes(64, 100), [71, 100]);
        assert_eq!(sizes(1, 3), [1, 2, 3]);
    }

    #[test]
    fn the_first_scale_takes_the_initial_steps() {
        let s = schedule(256, 512, 1000, 500);
        assert_eq!(
            s,
            [
                Scale {
                    size: 256,
                    steps: 1000
                },
                Scale {
                    size: 362,
                    steps: 500
                },
                Scale {
                    size: 512,
                    steps: 500
                },
            ]
        );
        assert_eq!(
            schedule(512, 512, 7, 3),
            [Scale {
                size: 512,
                steps: 7
            }]
        );
    }
}
