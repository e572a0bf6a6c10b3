//! The optimisation loop, one for both engines and every scale: Adam steps or L-BFGS
//! iterations, logged losses, the cancel flag, a loss that turns non-finite or a lost device
//! (the last image with a finite loss is kept), and the moving average. What happens is told
//! to an [`Observer`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;

use super::engine::Engine;
use super::error::Error;
use super::observer::{Observer, ScaleStart, StepDone};
use super::outcome::{Ending, LogEntry};
use super::settings::{Optimizer, Settings};
use crate::model::lbfgs::{projected, Lbfgs};
use crate::model::scales::Scale;
use crate::model::{AdamState, EngineSession, Image, LossValues};

const NOT_FINITE_AT_START: &str =
    "the loss of the initial image is non-finite (the weights or loss \
weights overflow f32); nothing was written";

/// What one scale left.
pub(super) struct ScaleResult {
    pub ending: Ending,
    /// The scale's result: the (averaged) image of its last evaluation, or the last image
    /// with a finite loss.
    pub image: Image,
    /// Adam's state, to carry to the next scale (Adam only, when the scale completed).
    pub adam: Option<AdamState>,
    pub steps: usize,
}

/// The loop's state across scales.
pub(super) struct Loop<'a> {
    pub settings: &'a Settings,
    pub scales: &'a [Scale],
    pub engine: &'a Engine,
    pub observer: &'a mut dyn Observer,
    pub cancel: &'a AtomicBool,
    pub entries: Vec<LogEntry>,
    pub started: Instant,
    pub steps_done: usize,
    /// The scale being run.
    current: ScaleStart,
    /// Kept on the CPU (read back on logged steps, which wait for the GPU anyway), so it
    /// survives a lost device.
    last_good: Option<Image>,
}

impl<'a> Loop<'a> {
    pub fn new(
        settings: &'a Settings, scales: &'a [Scale], engine: &'a Engine,
        observer: &'a mut dyn Observer, cancel: &'a AtomicBool,
    ) -> Loop<'a> {
        Loop {
            settings,
            scales,
            engine,
            observer,
            cancel,
            entries: Vec::new(),
            started: Instant::now(),
            steps_done: 0,
            current: ScaleStart {
                index: 0,
                count: scales.len(),
                width: 0,
                height: 0,
                steps: 0,
            },
            last_good: None,
        }
    }

    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Runs scale `index` on `session` (set up at that scale from its starting image), from
    /// Adam's state `adam` when carried over (freed once the session has it). Ends with one
    /// more evaluation (of the moving average when there is one), so the scale's last log
    /// entry describes its result.
    pub fn scale(
        &mut self, index: usize, session: &mut dyn EngineSession, adam: Option<AdamState>,
        (h, w): (usize, usize),
    ) -> Result<ScaleResult> {
        self.current = ScaleStart {
            index,
            count: self.scales.len(),
            width: w,
            height: h,
            steps: self.scales[index].steps,
        };
        self.observer.scale_started(&self.current);
        self.last_good = None;
        if let Some(state) = adam {
            session.set_adam_state(&state)?;
        }
        let (done, mut ending) = match self.settings.optimizer {
            Optimizer::Adam => self.adam_steps(session)?,
            Optimizer::Lbfgs => self.lbfgs_steps(session)?,
        };
        if !matches!(ending, Ending::NonFinite | Ending::DeviceLost) {
            if let Some(avg) = session.averaged_image()? {
                session.set_image(&avg.data)?;
            }
            let v = session.evaluate()?;
            if !self.accept(session, done, v)? {
                ending = Ending::NonFinite;
            }
        }
        let image = match (ending, self.last_good.take()) {
            (Ending::NonFinite | Ending::DeviceLost, Some(good)) => good,
            (Ending::DeviceLost, None) => {
                return Err(Error::DeviceLost(
                    "the GPU device was lost before the first step; nothing was written".into(),
                )
                .into())
            }
            // The copy kept for a failure is freed before the result is read.
            (_, good) => {
                drop(good);
                session.image()?
            }
        };
        let more = ending == Ending::Completed && index + 1 < self.scales.len();
        let adam = (more && self.settings.optimizer == Optimizer::Adam)
            .then(|| session.adam_state())
            .transpose()?;
        Ok(ScaleResult {
            ending,
            image,
            adam,
            steps: done,
        })
    }

    /// An engine error, or `Ending::DeviceLost` when the GPU is gone.
    fn lost(&mut self, e: anyhow::Error) -> Result<Ending> {
        if self.engine.lost() {
            self.observer
                .note(&format!("{e:#}; keeping the image of the last logged step"));
            return Ok(Ending::DeviceLost);
        }
        Err(e)
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn adam_steps(&mut self, session: &mut dyn EngineSession) -> Result<(usize, Ending)> {
        let steps = self.current.steps as usize;
        for s in 0..steps {
            if self.cancelled() {
                return Ok((s, Ending::Interrupted));
            }
            let losses = match session.step(s % self.settings.log_every == 0) {
                Err(e) => return Ok((s, self.lost(e)?)),
                Ok(v) => v,
            };
            if let Some(v) = losses {
                if !self.accept(session, s, v)? {
                    return Ok((s, Ending::NonFinite));
                }
            }
            self.advance(s + 1, session)?;
        }
        Ok((steps, Ending::Completed))
    }

    /// L-BFGS on the host: each step evaluates the objective and its gradient (read back) at
    /// the current image and moves to the projected L-BFGS step.
    fn lbfgs_steps(&mut self, session: &mut dyn EngineSession) -> Result<(usize, Ending)> {
        let steps = self.current.steps as usize;
        let mut lbfgs = Lbfgs::new(self.settings.history);
        let mut x = session.image()?.data;
        let mut last: Option<(Vec<f32>, Vec<f32>)> = None;
        for s in 0..steps {
            if self.cancelled() {
                return Ok((s, Ending::Interrupted));
            }
            let (v, g) = match session.loss_and_gradient() {
                Err(e) => return Ok((s, self.lost(e)?)),
                Ok(r) => r,
            };
            // Every step reads the loss: a non-finite one stops the run at once.
            if (s % self.settings.log_every == 0 || !v.total.is_finite())
                && !self.accept(session, s, v)?
            {
                return Ok((s, Ending::NonFinite));
            }
            if let Some((lx, lg)) = last.take() {
                let sub = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| a - b).collect();
                lbfgs.push(sub(&x, &lx), sub(&g, &lg));
            }
            let next = projected(&x, &lbfgs.direction(&g));
            session.set_image(&next)?;
            session.fold_average()?;
            last = Some((std::mem::replace(&mut x, next), g));
            self.advance(s + 1, session)?;
        }
        Ok((steps, Ending::Completed))
    }

    /// After a step: the observer is told (and may read the image).
    fn advance(&mut self, step: usize, session: &dyn EngineSession) -> Result<()> {
        self.steps_done += 1;
        let at = StepDone {
            scale: self.current,
            step,
            steps_done: self.steps_done,
        };
        self.observer.stepped(&at, &|| session.image())
    }

    /// Records the losses `v` of the image evaluated at `step`, and keeps that image.
    /// Ok(false) when they are non-finite after finite ones (the scale stops, keeping the
    /// last good image); an error when the very first loss is non-finite (nothing to keep).
    fn accept(&mut self, session: &dyn EngineSession, step: usize, v: LossValues) -> Result<bool> {
        if !v.total.is_finite() {
            if self.entries.is_empty() {
                return Err(Error::NonFinite(NOT_FINITE_AT_START.into()).into());
            }
            self.observer.note(&format!(
                "the loss became non-finite at step {step}; keeping the image of the last finite loss"
            ));
            return Ok(false);
        }
        // The image kept before is freed first: one copy at a time (hundreds of MiB at
        // print size, which the memory plan counts once).
        self.last_good = None;
        let image = session.evaluated_image()?;
        let entry = LogEntry {
            scale: self.current.index,
            width: self.current.width,
            height: self.current.height,
            step,
            steps_done: self.steps_done,
            seconds: self.seconds(),
            losses: v,
        };
        self.observer.logged(&entry, &image)?;
        self.last_good = Some(image);
        self.entries.push(entry);
        Ok(true)
    }
}

/// Adam's state resized to the next scale like the image (Lanczos3); the second moments,
/// which Lanczos can ring below zero, are clamped at zero.
pub(super) fn resize_adam(s: &AdamState, from: (usize, usize), to: (usize, usize)) -> AdamState {
    use crate::io::image::resize_planes;
    let mut v = resize_planes(&s.v, from, to);
    v.iter_mut().for_each(|v| *v = v.max(0.0));
    AdamState {
        m: resize_planes(&s.m, from, to),
        v,
        t: s.t,
    }
}
