//! The library every command drives (`impasto::job`): what an observer is told and when, the
//! cancel flag, style targets reused across jobs (the same bits as computed afresh, on both
//! engines, and not reused for another style), and the typed errors.

mod common;

use std::sync::atomic::Ordering;

use anyhow::Result;
use impasto::job::{
    Ending, Engine, Error, Job, LogEntry, Losses, Observer, Outcome, Quiet, ScaleStart, StepDone,
    Stylizer,
};
use impasto::kernels::Storage;
use impasto::model::Image;
use impasto::weights::Weights;

fn weights() -> Weights {
    Weights::load(&common::real_weights()).unwrap()
}

/// A small, fast objective of the shipped weights.
fn losses() -> Losses {
    Losses {
        content_layers: vec!["block2_conv1".into()],
        style_layers: vec!["block1_conv1".into(), "block2_conv1".into()],
        style_weight: 1e3,
        tv_weight: 1e2,
        ..Losses::default()
    }
}

fn job(style: &str, size: usize, steps: u64) -> Job {
    let (c, s) = (common::image("tubingen.jpg"), common::image(style));
    let mut job = Job::open(&c, &[&s]).unwrap();
    job.settings.size = size;
    job.settings.steps = steps;
    job.settings.log_every = 4;
    job
}

/// Everything an observer hears, in order.
#[derive(Default)]
struct Log(Vec<String>);

impl Observer for Log {
    fn scale_started(&mut self, s: &ScaleStart) {
        self.0
            .push(format!("scale {} {}x{}", s.index, s.width, s.height));
    }
    fn stepped(&mut self, at: &StepDone, image: &dyn Fn() -> Result<Image>) -> Result<()> {
        // The image is read only when asked for, and is the scale's size.
        if at.step == 2 {
            let img = image()?;
            assert_eq!((img.w, img.h), (at.scale.width, at.scale.height));
        }
        self.0.push(format!("step {}", at.steps_done));
        Ok(())
    }
    fn logged(&mut self, e: &LogEntry, image: &Image) -> Result<()> {
        assert_eq!((image.w, image.h), (e.width, e.height));
        self.0.push(format!("log {}", e.step));
        Ok(())
    }
    fn finished(&mut self, o: &Outcome) -> Result<()> {
        self.0.push(format!("end {}", o.ending.name()));
        Ok(())
    }
}

#[test]
fn an_observer_hears_each_scale_step_and_logged_evaluation_in_order() {
    let mut stylizer = Stylizer::new(Engine::cpu(), weights(), &losses()).unwrap();
    let mut j = job("starry_night.jpg", 40, 6);
    j.settings.min_size = Some(28);
    j.settings.initial_steps = Some(5);
    let mut log = Log::default();
    let o = stylizer.run(&j, &mut log).unwrap();
    let want = [
        "scale 0 28x21",
        "log 0",
        "step 1",
        "step 2",
        "step 3",
        "step 4",
        "log 4",
        "step 5",
        "log 5",
        "scale 1 40x30",
        "log 0",
        "step 6",
        "step 7",
        "step 8",
        "step 9",
        "log 4",
        "step 10",
        "step 11",
        "log 6",
        "end completed",
    ];
    assert_eq!(log.0, want);
    assert_eq!(o.ending, Ending::Completed);
    assert_eq!(o.steps_done, 11);
    assert_eq!(o.entries.len(), 6);
    assert_eq!((o.image.w, o.image.h), (40, 30));
    assert_eq!(o.scales.len(), 2);
}

/// Raises the cancel flag after `after` steps.
struct CancelAfter(usize, std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Observer for CancelAfter {
    fn stepped(&mut self, at: &StepDone, _: &dyn Fn() -> Result<Image>) -> Result<()> {
        if at.steps_done == self.0 {
            self.1.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[test]
fn the_cancel_flag_stops_a_run_after_its_step_with_the_image_it_has() {
    let mut stylizer = Stylizer::new(Engine::cpu(), weights(), &losses()).unwrap();
    let j = job("starry_night.jpg", 32, 50);
    let o = stylizer
        .run(&j, &mut CancelAfter(3, stylizer.cancel_flag()))
        .unwrap();
    assert_eq!(o.ending, Ending::Interrupted);
    assert_eq!(o.ending.exit_code(), 130);
    assert_eq!(o.steps_done, 3);
    // The image moved from the content: three steps were taken.
    let content = j.content.at(32);
    assert_ne!(o.image, content);
}

/// A job run twice by one Stylizer (the second with the targets the first computed) and once
/// by a fresh one: the same image and losses to the bit; and another style is not mistaken
/// for the first.
fn targets_are_reused_exactly(engine: impl Fn() -> Engine) {
    let j = job("starry_night.jpg", 36, 5);
    let mut stylizer = Stylizer::new(engine(), weights(), &losses()).unwrap();
    let first = stylizer.run(&j, &mut Quiet).unwrap();
    assert_eq!(stylizer.kept_style_sets(), 1);
    let t = std::time::Instant::now();
    let again = stylizer.run(&j, &mut Quiet).unwrap();
    // Found, not computed and kept again.
    assert_eq!(stylizer.kept_style_sets(), 1);
    let reused_seconds = t.elapsed().as_secs_f64();
    let fresh = Stylizer::new(engine(), weights(), &losses())
        .unwrap()
        .run(&j, &mut Quiet)
        .unwrap();
    for o in [&again, &fresh] {
        assert_eq!(o.image, first.image);
        let totals = |o: &Outcome| o.entries.iter().map(|e| e.losses.total).collect::<Vec<_>>();
        assert_eq!(totals(o), totals(&first));
    }
    let other = stylizer
        .run(&job("the_scream.jpg", 36, 5), &mut Quiet)
        .unwrap();
    assert_ne!(other.entries[0].losses.style, first.entries[0].losses.style);
    assert_eq!(stylizer.kept_style_sets(), 2);
    // The report's kernel variants: the GPU's per family, none on the CPU engine.
    match first.engine {
        "gpu" => {
            assert!(!first.tiling["conv"].is_empty(), "{:?}", first.tiling);
            assert_eq!(first.tiling["storage"], "f32");
            assert!(["checked", "unchecked"].contains(&first.tiling["shader_checks"].as_str()));
        }
        _ => assert!(first.tiling.is_empty()),
    }
    eprintln!("{}: second run {reused_seconds:.2} s", first.engine);
}

#[test]
fn style_targets_are_reused_exactly_on_the_cpu_engine() {
    targets_are_reused_exactly(Engine::cpu);
}

#[test]
fn style_targets_are_reused_exactly_on_the_gpu() {
    targets_are_reused_exactly(|| Engine::gpu(None, Storage::F32).unwrap());
}

#[test]
fn errors_are_typed() {
    let bad_layer = Losses {
        content_layers: vec!["block9_conv1".into()],
        ..losses()
    };
    let e = Stylizer::new(Engine::cpu(), weights(), &bad_layer)
        .err()
        .unwrap();
    assert!(matches!(e, Error::BadSetting(_)), "{e:?}");
    assert_eq!(e.exit_status(), 2);

    let deep = Losses {
        content_layers: vec!["block4_conv1".into()],
        ..losses()
    };
    let e = Stylizer::new(Engine::cpu(), weights(), &deep)
        .err()
        .unwrap();
    assert!(matches!(e, Error::BadFile(_)), "{e:?}");
    assert!(e.to_string().contains("needs every layer up to it"), "{e}");

    // A cap at three quarters of the plan's peak, less the program's fixed share (no size
    // would fit a cap below it).
    let j = job("starry_night.jpg", 64, 1);
    let stylizer = Stylizer::new(Engine::cpu(), weights(), &losses()).unwrap();
    let plan = stylizer.plan(&j, 64).unwrap().plan;
    let fixed = (plan.kinds.iter())
        .find(|k| k.0.starts_with("the program"))
        .map_or(0, |k| k.1);
    let cap = fixed + (plan.peak() - fixed) * 3 / 4;
    let mut stylizer = stylizer.with_max_memory(Some(cap));
    let e = stylizer.run(&j, &mut Quiet).err();
    match e {
        Some(Error::DoesNotFit {
            largest_size,
            message,
        }) => {
            assert!(largest_size.is_some_and(|s| s < 64), "{message}");
            assert!(
                message.contains("the largest --size that fits is"),
                "{message}"
            );
        }
        e => panic!("{e:?}"),
    }

    let mut stylizer = Stylizer::new(Engine::cpu(), weights(), &losses()).unwrap();
    let mut j = job("starry_night.jpg", 64, 1);
    j.settings.min_size = Some(2);
    let e = stylizer.run(&j, &mut Quiet).err().unwrap();
    assert!(matches!(e, Error::BadSetting(_)), "{e:?}");
    assert!(e.to_string().starts_with("--min-size 2"), "{e}");

    let missing = common::image("nope.jpg");
    let e = Job::open(&missing, &[&missing]).err().unwrap();
    assert!(matches!(e, Error::BadFile(_)), "{e:?}");
    assert!(e.to_string().contains("nope.jpg"), "{e}");
}

#[test]
fn a_non_finite_first_loss_keeps_nothing() {
    let huge = Losses {
        style_weight: f64::MAX,
        ..losses()
    };
    let mut stylizer = Stylizer::new(Engine::cpu(), weights(), &huge).unwrap();
    let e = stylizer
        .run(&job("starry_night.jpg", 32, 3), &mut Quiet)
        .err();
    match e {
        Some(e @ Error::NonFinite(_)) => assert!(e.to_string().contains("nothing was written")),
        e => panic!("{e:?}"),
    }
}
