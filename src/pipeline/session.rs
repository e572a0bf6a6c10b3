//! An optimisation session: the image being optimised, the objective and Adam on the GPU,
//! set up once; each step is one command buffer and one submit.

use anyhow::{bail, Result};

use crate::gpu::{submit, Dispatch, Gpu};
use crate::kernels::preprocess::initial_grad_scale;
use crate::kernels::{Kernels, Storage};
use crate::model::engine::MemoryPlan;
use crate::model::style::{per_position, StyleMoments};
use crate::model::tiles::TilePlan;
use crate::model::{AdamState, Affine, Average, Image, LossValues};
use crate::pipeline::adam::Adam;
use crate::pipeline::network::{GpuConv, GpuNet, Lent};
use crate::pipeline::objective::{gradient_buffers, GpuStyleTerm, GpuTargets, Objective};
use crate::pipeline::tiled::{grams_by_tiles, Layers};
use crate::pipeline::tiled_objective::{Context, Evaluation, TiledObjective};
use crate::weights::Weights;

/// What a GPU session is set up from.
pub type Setup<'a> = crate::model::engine::Setup<'a, Weights>;

pub struct Session<'g> {
    gpu: &'g Gpu,
    pub h: usize,
    pub w: usize,
    pub x: wgpu::Buffer,
    /// The image of the last loss evaluation (copied on logged steps).
    evaluated_x: wgpu::Buffer,
    pub objective: Evaluation,
    /// Each style image's Gram matrices per position, kept for later sessions with the same
    /// styles.
    style_host: Vec<StyleMoments>,
    adam: Adam,
    /// The moving average of the iterates: its count, raw buffer and fold dispatch.
    average: Option<(Average, wgpu::Buffer, Vec<Dispatch>)>,
    pub steps_done: usize,
    /// Gradients stored in f16 or multiplied on f16 operands (mixed precision), under a
    /// scale (`kernels::preprocess`) that keeps them inside f16's range.
    grads_f16: bool,
    /// Ledger marks: session start, weights uploaded, style phase over, all made.
    marks: [usize; 4],
}

/// The kind of memory a storage buffer is, by its label (see `Session::plan`).
fn kind_of(label: &str) -> &'static str {
    match label {
        "network input" | "activation" => "activations kept for the backward",
        "gradient A" | "gradient B" | "dL/dx" => "gradients",
        "content target" | "style target" | "temporal target" | "temporal weights" => "targets",
        "gram" | "loss values" | "style mask" | "masked features" => {
            "Gram matrices, masks and loss values"
        }
        "tile crop" | "tile crop gradient" | "tile content target" | "tile gram" | "no mask" => {
            "tile scratch: crop, targets"
        }
        "pool routes" | "relu signs" => "pooling routes and ReLU signs",
        "image"
        | "last evaluated image"
        | "adam m"
        | "adam v"
        | "adam state"
        | "moving average" => "image and optimiser state",
        _ => "reduction scratch",
    }
}

impl<'g> Session<'g> {
    pub fn new(gpu: &'g Gpu, kernels: &Kernels, s: &Setup<'_>) -> Result<Session<'g>> {
        Session::build(gpu, kernels, s, false)
    }

    /// A session whose buffers are all made, in the order a real one makes and frees them,
    /// but whose targets are never computed: no kernel runs (`--dry-run`).
    pub fn dry(gpu: &'g Gpu, kernels: &Kernels, s: &Setup<'_>) -> Result<Session<'g>> {
        Session::build(gpu, kernels, s, true)
    }

    /// What the session holds, by kind, from the buffers it made.
    pub fn plan(&self) -> MemoryPlan {
        let [start, weights, style, end] = self.marks;
        let sum = |r: std::ops::Range<usize>| self.gpu.ledger(r).iter().map(|e| e.1).sum::<u64>();
        let from_setup = sum(start..weights);
        let items = self.gpu.ledger(style..end);
        MemoryPlan {
            kinds: MemoryPlan::by_kind(
                [("weights", from_setup)]
                    .into_iter()
                    .chain(items.iter().map(|(l, b)| (kind_of(l), *b))),
            ),
            setup_only: sum(weights..style),
            from_setup,
            ..MemoryPlan::default()
        }
    }

    fn build(gpu: &'g Gpu, kernels: &Kernels, s: &Setup<'_>, dry: bool) -> Result<Session<'g>> {
        let start = gpu.ledger_len();
        let (h, w) = (s.content.h, s.content.w);
        check_images(s)?;
        let affine = s.weights.convention.affine();
        let deepest = s.loss.deepest();
        let convs = s
            .weights
            .layers_up_to(s.arch, deepest)?
            .into_iter()
            .zip(&s.arch.convs)
            .map(|(cw, spec)| GpuConv::upload(gpu, kernels, &spec.name, cw))
            .collect::<Result<Vec<_>>>()?;
        let weights_made = gpu.ledger_len();
        let style_host = match s.style_targets {
            Some(t) => t.to_vec(),
            None => style_targets(gpu, kernels, &convs, &affine, s, dry)?,
        };
        let style_made = gpu.ledger_len();
        let stages = s.arch.stages(deepest, h, w, s.pooling);
        let style = s
            .style_terms(&stages, &style_host)?
            .into_iter()
            .map(|t| GpuStyleTerm::upload(gpu, t))
            .collect::<Result<Vec<_>>>()?;
        // The style networks' buffers are gone once the GPU has finished with them: wait, so
        // that the main network's allocations do not stack on top of them.
        gpu.wait()?;

        let n = 3 * h * w;
        // Whole, every kernel binds the image whole; in tiles, by ranges of planes.
        let image = |label: &str| match s.tile {
            None => gpu.storage(label, n),
            Some(_) => gpu.plane_storage(label, (3, h * w)),
        };
        let (x, evaluated_x) = (image("image")?, image("last evaluated image")?);
        let targets = GpuTargets {
            content: Vec::new(),
            style,
            temporal: temporal_target(gpu, s)?,
        };
        let parts = (stages, convs.as_slice(), &affine);
        let objective = evaluation(gpu, kernels, s, parts, &x, targets, dry)?;
        let adam = Adam::new(
            gpu,
            kernels,
            &s.adam,
            &x,
            objective.grad_x(),
            objective.grad_scale(),
            n,
        )?;
        gpu.write(&x, &s.init.data);
        let average = moving_average(gpu, kernels, s, &x)?;
        gpu.wait()?;
        let session = Session {
            gpu,
            h,
            w,
            x,
            evaluated_x,
            objective,
            style_host,
            adam,
            average,
            steps_done: 0,
            grads_f16: kernels.storage == Storage::F16
                || kernels.variants().precision() == crate::kernels::Precision::Mixed,
            marks: [start, weights_made, style_made, gpu.ledger_len()],
        };
        if session.grads_f16 && !dry {
            session.calibrate_grad_scale()?;
        }
        Ok(session)
    }

    /// 16-bit gradients: the largest power-of-two scale, from 1 down by factors of 16, at
    /// which the initial image's gradient does not overflow. (Should a later step's
    /// overflow, Adam skips it and the scale halves: `kernels::preprocess`.)
    fn calibrate_grad_scale(&self) -> Result<()> {
        let mut scale = 1.0f32;
        for _ in 0..16 {
            self.set_grad_scale(scale);
            let d = self.objective.step_dispatches(false);
            self.objective.submit(self.gpu, &[], &d, false)?;
            if !self.grad_overflowed()? {
                return Ok(());
            }
            scale /= 16.0;
        }
        bail!("the gradient is not finite even at a scale of {scale:e}")
    }

    fn set_grad_scale(&self, scale: f32) {
        let state = initial_grad_scale(scale);
        self.gpu
            .write(self.objective.grad_scale(), bytemuck::cast_slice(&state));
    }

    fn grad_scale_state(&self) -> Result<[u32; 4]> {
        let v = self.gpu.read(self.objective.grad_scale(), 4)?;
        Ok([0, 1, 2, 3].map(|i| v[i].to_bits()))
    }

    fn grad_overflowed(&self) -> Result<bool> {
        Ok(self.grad_scale_state()?[2] != 0)
    }

    /// The gradient scale now (1 unless 16-bit gradients needed less), and how many steps
    /// were skipped because their gradient overflowed.
    pub fn grad_scale(&self) -> Result<(f32, usize)> {
        let s = self.grad_scale_state()?;
        Ok((f32::from_bits(s[0]), s[3] as usize))
    }

    /// The objective's dispatches; with 16-bit gradients, if the gradient overflowed, the
    /// scale's halving and again (the losses, when asked for, are those of the last run).
    fn gradient_without_overflow(&self, losses: bool) -> Result<()> {
        let copies: &[_] = if losses {
            &[(&self.x, &self.evaluated_x)]
        } else {
            &[]
        };
        if !self.grads_f16 {
            // An f32 gradient that is not finite stays so (the caller sees it); only the flag
            // is lowered, so that Adam's next step is not skipped.
            let mut d = self.objective.step_dispatches(losses);
            d.push(self.objective.scale_update());
            return self.objective.submit(self.gpu, copies, &d, losses);
        }
        for _ in 0..16 {
            let d = self.objective.step_dispatches(losses);
            self.objective.submit(self.gpu, copies, &d, losses)?;
            if !self.grad_overflowed()? {
                return Ok(());
            }
            submit(self.gpu, &[], &[self.objective.scale_update()]);
        }
        bail!("the gradient is not finite")
    }

    /// One Adam step. With `losses`, also returns the losses of the image before the update.
    /// Everything one step runs, in order: forward, (loss values), backward, Adam, and the
    /// moving average's fold.
    pub fn step_dispatches(&self, losses: bool) -> Vec<&Dispatch> {
        let mut d = self.objective.step_dispatches(losses);
        d.extend(&self.adam.dispatches);
        d.extend(self.average.iter().flat_map(|a| &a.2));
        d.push(self.objective.scale_update());
        d
    }

    pub fn step(&mut self, losses: bool) -> Result<Option<LossValues>> {
        // Keep the image these losses describe, in case they turn out non-finite.
        let copies: &[_] = if losses {
            &[(&self.x, &self.evaluated_x)]
        } else {
            &[]
        };
        self.objective
            .submit(self.gpu, copies, &self.step_dispatches(losses), losses)?;
        self.steps_done += 1;
        if let Some(a) = &mut self.average {
            a.0.fold();
        }
        if losses {
            return Ok(Some(self.objective.read_losses(self.gpu)?));
        }
        Ok(None)
    }

    /// The losses of the current image (no update).
    pub fn evaluate(&self) -> Result<LossValues> {
        let d = self.objective.loss_dispatches();
        (self.objective).submit(self.gpu, &[(&self.x, &self.evaluated_x)], &d, true)?;
        self.objective.read_losses(self.gpu)
    }

    /// d(total)/dx of the current image, without updating it.
    pub fn gradient(&self) -> Result<Vec<f32>> {
        self.gradient_without_overflow(false)?;
        self.gpu.read(self.objective.grad_x(), 3 * self.h * self.w)
    }

    pub fn image(&self) -> Result<Image> {
        Ok(Image {
            h: self.h,
            w: self.w,
            data: self.gpu.read(&self.x, 3 * self.h * self.w)?,
        })
    }

    /// The image of the last loss evaluation (the one its losses describe).
    pub fn evaluated_image(&self) -> Result<Image> {
        Ok(Image {
            h: self.h,
            w: self.w,
            data: self.gpu.read(&self.evaluated_x, 3 * self.h * self.w)?,
        })
    }
}

/// The tiles of `s.tile` for the network `stages` (the image's), halos wrapping around with
/// `--seamless`; None without `--tile`.
fn tile_plan(s: &Setup<'_>, stages: &[crate::model::Stage]) -> Result<Option<TilePlan>> {
    let Some(tile) = s.tile else {
        return Ok(None);
    };
    let size = (stages[0].h, stages[0].w);
    let plan = match s.loss.seamless {
        true => TilePlan::wrapped(stages, size, tile),
        false => TilePlan::new(stages, size, tile),
    };
    Ok(Some(plan.map_err(anyhow::Error::msg)?))
}

/// The objective of `s` on the image buffer `x`: by tiles with `--tile`, else whole.
fn evaluation(
    gpu: &Gpu, kernels: &Kernels, s: &Setup<'_>,
    (stages, convs, affine): (Vec<crate::model::Stage>, &[GpuConv], &Affine), x: &wgpu::Buffer,
    targets: GpuTargets, dry: bool,
) -> Result<Evaluation> {
    Ok(match tile_plan(s, &stages)? {
        Some(plan) => {
            let cx = Context {
                gpu,
                kernels,
                convs,
                affine,
                x,
            };
            Evaluation::Tiled(Box::new(TiledObjective::new(&cx, s, plan, targets, dry)?))
        }
        None => {
            let parts = (stages, convs, affine);
            Evaluation::Whole(Box::new(whole_objective(
                gpu, kernels, s, parts, x, targets, dry,
            )?))
        }
    })
}

/// The untiled objective: the network on the image buffer `x` (the outputs the backward never
/// reads lent to the gradient buffers), its content targets computed from `s.content`.
fn whole_objective(
    gpu: &Gpu, kernels: &Kernels, s: &Setup<'_>,
    (stages, convs, affine): (Vec<crate::model::Stage>, &[GpuConv], &Affine), x: &wgpu::Buffer,
    mut targets: GpuTargets, dry: bool,
) -> Result<Objective> {
    let grads = gradient_buffers(gpu, kernels, &stages)?;
    let lent = Lent {
        buffers: &grads,
        loss_layers: s.loss.layers(),
    };
    let wrap = s.loss.seamless;
    let net = GpuNet::new(gpu, kernels, stages, convs, affine, x, Some(lent), wrap)?;
    // The content image's features at the content layers.
    targets.content = content_targets(gpu, kernels, &net, s, x, dry)?;
    Objective::new(gpu, kernels, net, convs, s.loss, &targets, affine, x, grads)
}

/// Fails when the starting image is not content-sized, or an image is too small for the
/// layers: the image being optimised (content-sized) feeds every loss layer, a style image
/// only the style layers.
fn check_images(s: &Setup<'_>) -> Result<()> {
    let (h, w) = (s.content.h, s.content.w);
    if (s.init.h, s.init.w) != (h, w) {
        bail!(
            "the initial image is {}x{}, the content image {}x{}",
            s.init.w,
            s.init.h,
            w,
            h
        );
    }
    crate::model::vgg19::check_sizes(s.arch, s.loss, s.pooling, s.content, s.styles)
}

/// A video frame's temporal term uploaded: its target, its per-pixel weights, and λ.
fn temporal_target(gpu: &Gpu, s: &Setup<'_>) -> Result<Option<(wgpu::Buffer, wgpu::Buffer, f64)>> {
    let Some(t) = s.temporal else {
        return Ok(None);
    };
    let target = gpu.plane_storage("temporal target", (3, t.weights.len()))?;
    gpu.write(&target, &t.target.data);
    Ok(Some((
        target,
        gpu.storage_from("temporal weights", &t.weights)?,
        t.weight,
    )))
}

/// The moving average of the iterates (when `s.average` asks for one), started from the
/// initial image: its count, raw buffer and fold dispatch.
fn moving_average(
    gpu: &Gpu, kernels: &Kernels, s: &Setup<'_>, x: &wgpu::Buffer,
) -> Result<Option<(Average, wgpu::Buffer, Vec<Dispatch>)>> {
    if s.average <= 0.0 {
        return Ok(None);
    }
    let d = s.average as f32;
    let raw: Vec<f32> = s.init.data.iter().map(|&x| (1.0 - d) * x).collect();
    let buf = gpu.plane_storage("moving average", (3, s.init.h * s.init.w))?;
    gpu.write(&buf, &raw);
    let fold = kernels.adam.fold(gpu, d, raw.len(), x, &buf);
    Ok(Some((Average::new(s.average), buf, fold)))
}

/// Each style image's Gram matrices per position ([`StyleMoments`]), whole or by tiles
/// (`--tile`, when the image's halos can wrap exactly under `--seamless`). A dry session
/// makes every buffer but runs nothing (the Grams are zeros).
fn style_targets(
    gpu: &Gpu, kernels: &Kernels, convs: &[GpuConv], affine: &Affine, s: &Setup<'_>, dry: bool,
) -> Result<Vec<StyleMoments>> {
    s.style_shares()?;
    let style_deepest = s.loss.style_layers.iter().copied().max().unwrap_or(0);
    let mut out = Vec::new();
    for (img, _) in s.styles {
        let stages = s.arch.stages(style_deepest, img.h, img.w, s.pooling);
        let size = (img.h, img.w);
        let plan = s.tile.and_then(|t| match s.loss.seamless {
            true => TilePlan::wrapped(&stages, size, t).ok(),
            false => TilePlan::new(&stages, size, t).ok(),
        });
        let (values, sums) = match plan {
            Some(plan) => {
                let layers = Layers {
                    arch: s.arch,
                    pooling: s.pooling,
                    loss_layers: s.loss.style_layers.clone(),
                    style_layers: &s.loss.style_layers,
                    convs,
                    affine,
                };
                grams_by_tiles(gpu, kernels, &layers, plan, &img.data, dry)?
            }
            None => whole_style_grams(gpu, kernels, (convs, affine), s, (img, &stages), dry)?,
        };
        out.push(per_position(&stages, &s.loss.style_layers, values, sums));
    }
    Ok(out)
}

/// A style image's Gram matrices and channel sums at the style layers, through a network of
/// its `stages` that keeps only the style layers' outputs (the rest go through two scratch
/// buffers), read back (setup only).
#[allow(clippy::type_complexity)]
fn whole_style_grams(
    gpu: &Gpu, kernels: &Kernels, (convs, affine): (&[GpuConv], &Affine), s: &Setup<'_>,
    (img, stages): (&Image, &[crate::model::Stage]), dry: bool,
) -> Result<(Vec<Vec<f32>>, Vec<Vec<f64>>)> {
    let sx = gpu.storage("style image", 3 * img.h * img.w)?;
    gpu.write(&sx, &img.data);
    let scratch = gradient_buffers(gpu, kernels, stages)?;
    let lent = Lent {
        buffers: &scratch,
        loss_layers: s.loss.style_layers.clone(),
    };
    let (st, wrap) = (stages.to_vec(), s.loss.seamless);
    let snet = GpuNet::new(gpu, kernels, st, convs, affine, &sx, Some(lent), wrap)?;
    let mut grams = Vec::new();
    let mut d: Vec<Dispatch> = Vec::new();
    for &l in &s.loss.style_layers {
        let i = snet.conv_stage(l);
        let st = &snet.stages[i];
        let (n, m) = (st.cout, st.h * st.w);
        let (g, sums) = (
            gpu.storage("style gram", n * n)?,
            gpu.storage("style sums", n)?,
        );
        d.extend(kernels.gram.matrix(gpu, (n, m), &snet.acts[i], &g)?);
        d.extend(
            kernels
                .loss
                .channel_sums(gpu, (n, m), &snet.acts[i], &sums, false),
        );
        grams.push((g, sums, n));
    }
    if !dry {
        submit(gpu, &[], &snet.forward.iter().chain(&d).collect::<Vec<_>>());
    }
    let read = |b: &wgpu::Buffer, len: usize| match dry {
        true => Ok(vec![0.0; len]),
        false => gpu.read(b, len),
    };
    let mut out = (Vec::new(), Vec::new());
    for (g, sums, n) in &grams {
        out.0.push(read(g, n * n)?);
        out.1
            .push(read(sums, *n)?.into_iter().map(f64::from).collect());
    }
    Ok(out)
}

/// The content image's features at the content layers, through the main network `net`
/// (whose input is `x`).
fn content_targets(
    gpu: &Gpu, kernels: &Kernels, net: &GpuNet, s: &Setup<'_>, x: &wgpu::Buffer, dry: bool,
) -> Result<Vec<wgpu::Buffer>> {
    gpu.write(x, &s.content.data);
    if !dry {
        submit(gpu, &[], &net.forward.iter().collect::<Vec<_>>());
    }
    let mut content = Vec::new();
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    for &l in &s.loss.content_layers {
        let i = net.conv_stage(l);
        let t = kernels.feature_map(gpu, "content target", net.stages[i].out_len())?;
        if !dry {
            enc.copy_buffer_to_buffer(&net.acts[i], 0, &t, 0, None);
        }
        content.push(t);
    }
    gpu.queue.submit([enc.finish()]);
    // Let the content image's upload finish, so its staging copy is gone before the
    // objective's buffers are made.
    gpu.wait()?;
    Ok(content)
}

impl crate::model::EngineSession for Session<'_> {
    fn step(&mut self, losses: bool) -> Result<Option<LossValues>> {
        Session::step(self, losses)
    }
    fn evaluate(&mut self) -> Result<LossValues> {
        Session::evaluate(self)
    }
    fn image(&self) -> Result<Image> {
        Session::image(self)
    }
    fn evaluated_image(&self) -> Result<Image> {
        Session::evaluated_image(self)
    }
    fn steps_done(&self) -> usize {
        self.steps_done
    }
    fn set_image(&mut self, x: &[f32]) -> Result<()> {
        if x.len() != 3 * self.h * self.w {
            bail!(
                "an image of {} values for a {}x{} session",
                x.len(),
                self.w,
                self.h
            );
        }
        self.gpu.write(&self.x, x);
        Ok(())
    }
    fn loss_and_gradient(&mut self) -> Result<(LossValues, Vec<f32>)> {
        self.gradient_without_overflow(true)?;
        let v = self.objective.read_losses(self.gpu)?;
        Ok((
            v,
            self.gpu
                .read(self.objective.grad_x(), 3 * self.h * self.w)?,
        ))
    }
    fn adam_state(&self) -> Result<AdamState> {
        self.adam.read(self.gpu, 3 * self.h * self.w)
    }
    fn set_adam_state(&mut self, state: &AdamState) -> Result<()> {
        let n = 3 * self.h * self.w;
        if state.m.len() != n || state.v.len() != n {
            bail!("Adam's state is for another image size");
        }
        self.adam.write(self.gpu, state);
        Ok(())
    }
    fn fold_average(&mut self) -> Result<()> {
        if let Some((a, _, fold)) = &mut self.average {
            submit(self.gpu, &[], &fold.iter().collect::<Vec<_>>());
            a.fold();
        }
        Ok(())
    }
    fn style_targets(&self) -> Vec<StyleMoments> {
        self.style_host.clone()
    }
    fn skipped_steps(&self) -> Result<usize> {
        Ok(self.grad_scale()?.1)
    }
    fn averaged_image(&self) -> Result<Option<Image>> {
        let Some((a, raw, _)) = &self.average else {
            return Ok(None);
        };
        let c = a.correction() as f32;
        let data = self.gpu.read(raw, 3 * self.h * self.w)?;
        Ok(Some(Image {
            h: self.h,
            w: self.w,
            data: data.iter().map(|&r| (r * c).clamp(0.0, 1.0)).collect(),
        }))
    }
}
