//! `impasto batch`: the manifest (CSV and JSON Lines, column overrides, bad lines refused
//! naming them), sharding (--shard, Slurm's array variables, Kubernetes' completion index),
//! skip and redo, a failing job among good ones, the results file; and a real Slurm (a
//! private one-node cluster started by the test): an array writes every output once, and after
//! one task is cancelled mid-run a resubmitted array makes only what is missing.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A folder with the three shipped images and a manifest to write.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        let d = tempfile::tempdir().unwrap();
        for name in ["tubingen.jpg", "starry_night.jpg", "the_scream.jpg"] {
            std::fs::copy(common::image(name), d.path().join(name)).unwrap();
        }
        Dir(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `impasto batch MANIFEST` on the CPU engine with the shipped weights, tiny and quick.
    fn batch(&self, manifest: &str, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_impasto"));
        c.current_dir(self.0.path())
            .env("XDG_RUNTIME_DIR", self.0.path())
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX")
            .args(["batch", manifest, "--engine", "cpu", "--weights"])
            .arg(common::real_weights())
            .args(["--content-layers", "block2_conv1"])
            .args(["--style-layers", "block1_conv1,block2_conv1"])
            .args(["--size", "24", "--steps", "3"])
            .args(extra);
        c
    }
}

fn run(mut c: Command) -> Output {
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The results file's lines as (output's folder and name, status).
fn results(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let out = Path::new(v["output"].as_str().unwrap());
            let parts: Vec<_> = out.iter().rev().take(2).collect();
            let name = format!(
                "{}/{}",
                parts[1].to_string_lossy(),
                parts[0].to_string_lossy()
            );
            (name, v["status"].as_str().unwrap().to_string())
        })
        .collect()
}

const SIX: &str = "content,style,output\n\
tubingen.jpg,starry_night.jpg,out/0.png\n\
tubingen.jpg,the_scream.jpg,out/1.png\n\
the_scream.jpg,starry_night.jpg,out/2.png\n\
tubingen.jpg,starry_night.jpg;the_scream.jpg,out/3.png\n\
starry_night.jpg,the_scream.jpg,out/4.png\n\
tubingen.jpg,starry_night.jpg,out/5.png\n";

fn made(d: &Dir) -> Vec<usize> {
    (0..6)
        .filter(|i| d.path(&format!("out/{i}.png")).exists())
        .collect()
}

#[test]
fn a_manifest_runs_every_job_and_a_rerun_skips_what_exists() {
    let d = Dir::new();
    d.write("jobs.csv", SIX);
    let o = run(d.batch("jobs.csv", &["--results", "r.jsonl"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(made(&d), [0, 1, 2, 3, 4, 5]);
    let first = results(&d.path("r.jsonl"));
    assert!(first.iter().all(|r| r.1 == "done"), "{first:?}");
    assert_eq!(first.len(), 6);
    let mtime = |i: usize| {
        let p = d.path(&format!("out/{i}.png"));
        std::fs::metadata(p).unwrap().modified().unwrap()
    };
    let before: Vec<_> = (0..6).map(mtime).collect();
    // Again: every job skipped, nothing rewritten.
    let o = run(d.batch("jobs.csv", &["--results", "r.jsonl"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let all = results(&d.path("r.jsonl"));
    assert!(all[6..].iter().all(|r| r.1 == "skipped"), "{all:?}");
    assert_eq!(before, (0..6).map(mtime).collect::<Vec<_>>());
    // --overwrite redoes them.
    std::fs::remove_file(d.path("r.jsonl")).unwrap();
    let o = run(d.batch("jobs.csv", &["--overwrite", "--results", "r.jsonl"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(results(&d.path("r.jsonl")).iter().all(|r| r.1 == "done"));
}

#[test]
fn columns_override_the_defaults_and_json_lines_are_read() {
    let d = Dir::new();
    d.write(
        "jobs.csv",
        "content,style,output,size,style_weight,content-layers\n\
         tubingen.jpg,starry_night.jpg,a.png,40,2e3,\n\
         tubingen.jpg,starry_night.jpg,b.png,,,block1_conv2\n",
    );
    let o = run(d.batch("jobs.csv", &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    let size = |p: &str| image::image_dimensions(d.path(p)).unwrap();
    assert_eq!(size("a.png"), (40, 30));
    assert_eq!(size("b.png"), (24, 18));
    d.write(
        "jobs.jsonl",
        "{\"content\": \"tubingen.jpg\", \"style\": [\"starry_night.jpg\", \"the_scream.jpg\"], \"output\": \"j/c.png\", \"size\": 32, \"style_blend\": [3, 1]}\n\
         \n\
         {\"content\": \"the_scream.jpg\", \"style\": \"starry_night.jpg\", \"output\": \"j/d.png\", \"init\": \"noise\"}\n",
    );
    let o = run(d.batch("jobs.jsonl", &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(size("j/c.png"), (32, 24));
    assert!(d.path("j/d.png").exists());
}

#[test]
fn a_malformed_manifest_is_refused_before_any_work_naming_its_line() {
    let d = Dir::new();
    let cases = [
        ("content,style,output\ntubingen.jpg,starry_night.jpg,a.png\nx,\"y,z\n", "line 3"),
        ("content,style,output,colour\ntubingen.jpg,starry_night.jpg,a.png,red\n", "unknown column \"colour\""),
        ("content,style,output,engine\ntubingen.jpg,starry_night.jpg,a.png,gpu\n", "column engine"),
        ("content,output\ntubingen.jpg,a.png\n", "line 2: no style"),
        ("content,style,output\ntubingen.jpg,starry_night.jpg,a.png\nthe_scream.jpg,starry_night.jpg,./a.png\n", "line 3: output ./a.png is line 2's output too"),
        ("content,style,output\ntubingen.jpg,starry_night.jpg,the_scream.jpg\nthe_scream.jpg,starry_night.jpg,b.png\n", "line 2: output the_scream.jpg is line 3's input"),
        ("content,style,output\n", "no jobs"),
    ];
    for (text, what) in cases {
        d.write("bad.csv", text);
        let o = run(d.batch("bad.csv", &[]));
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains(what), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains("bad.csv"), "{}", stderr(&o));
        assert!(!d.path("a.png").exists() && !d.path("b.png").exists());
    }
    d.write("bad.jsonl", "{\"content\": \"tubingen.jpg\"}\n[1, 2]\n");
    let o = run(d.batch("bad.jsonl", &[]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("line 2: not a JSON object"),
        "{}",
        stderr(&o)
    );
    let o = run(d.batch("jobs.csv", &["--report", "r.json"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--report is per job"), "{}", stderr(&o));
}

#[test]
fn a_failing_job_is_reported_and_the_others_go_on() {
    let d = Dir::new();
    d.write(
        "jobs.csv",
        "content,style,output,size\n\
         tubingen.jpg,starry_night.jpg,a.png,\n\
         missing.jpg,starry_night.jpg,b.png,\n\
         tubingen.jpg,starry_night.jpg,c.png,big\n\
         tubingen.jpg,the_scream.jpg,d.png,\n",
    );
    let o = run(d.batch("jobs.csv", &["--results", "r-{shard}.jsonl"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(d.path("a.png").exists() && d.path("d.png").exists());
    assert!(!d.path("b.png").exists() && !d.path("c.png").exists());
    let text = std::fs::read_to_string(d.path("r-0.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let status: Vec<&str> = lines
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["done", "failed", "failed", "done"]);
    assert!(
        lines[1]["error"].as_str().unwrap().contains("missing.jpg"),
        "{text}"
    );
    assert!(
        lines[2]["error"].as_str().unwrap().contains("'big'"),
        "{text}"
    );
    assert!(
        lines[0]["losses"]["total"].as_f64().unwrap() > 0.0,
        "{text}"
    );
    assert!(lines[0]["seconds"].as_f64().unwrap() > 0.0, "{text}");
}

#[test]
fn shards_come_from_the_flag_slurm_or_kubernetes() {
    let d = Dir::new();
    d.write("jobs.csv", SIX);
    let shard = |env: &[(&str, &str)], extra: &[&str]| {
        let mut c = d.batch("jobs.csv", extra);
        c.envs(env.iter().copied());
        let o = run(c);
        let made = made(&d);
        std::fs::remove_dir_all(d.path("out")).ok();
        (o, made)
    };
    let (o, m) = shard(&[], &["--shard", "1/4"]);
    assert!(
        stderr(&o).contains("shard 1/4: --shard 1/4"),
        "{}",
        stderr(&o)
    );
    assert_eq!(m, [1, 5]);
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "12"),
        ("SLURM_ARRAY_TASK_MIN", "10"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
    ];
    let (o, m) = shard(&slurm, &[]);
    assert!(stderr(&o).contains("Slurm array task 12"), "{}", stderr(&o));
    assert_eq!(m, [2, 5]);
    let (o, m) = shard(&[("JOB_COMPLETION_INDEX", "0")], &["--shards", "2"]);
    assert!(
        stderr(&o).contains("JOB_COMPLETION_INDEX 0"),
        "{}",
        stderr(&o)
    );
    assert_eq!(m, [0, 2, 4]);
    let (o, m) = shard(
        &[("JOB_COMPLETION_INDEX", "1"), ("IMPASTO_SHARDS", "3")],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(m, [1, 4]);
    for (env, extra, what) in [
        (
            &[("JOB_COMPLETION_INDEX", "1")][..],
            &[][..],
            "--shards N or IMPASTO_SHARDS",
        ),
        (&[], &["--shard", "4/4"][..], "K must be below N"),
        (&[], &["--shard", "one"][..], "--shard"),
    ] {
        let (o, m) = shard(env, extra);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains(what), "{what}: {}", stderr(&o));
        assert!(m.is_empty());
    }
}

/// A one-node Slurm of the test's own: munged, slurmctld and slurmd on a private socket,
/// ports and state folder, its configuration given to the clients by SLURM_CONF. Stopped, by
/// the pids it started, when dropped.
struct Slurm {
    dir: tempfile::TempDir,
    daemons: Vec<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Slurm {
    fn start() -> Slurm {
        for tool in ["munged", "slurmctld", "slurmd", "sbatch"] {
            let found = Command::new("sh")
                .args([
                    "-c",
                    &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
                ])
                .output()
                .unwrap();
            assert!(
                found.status.success(),
                "{tool} is missing: apt-get install slurm-wlm munge (bash scripts/test does)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        std::fs::create_dir_all(d.join("state")).unwrap();
        std::fs::create_dir_all(d.join("spool")).unwrap();
        let key: Vec<u8> = (0..1024).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(d.join("munge.key"), key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("munge.key"), std::fs::Permissions::from_mode(0o400))
            .unwrap();
        let spawn = |program: &str, args: &[String]| {
            Command::new(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(d.join(format!("{program}.err").replace('/', "_")))
                        .unwrap(),
                )
                .spawn()
                .unwrap_or_else(|e| panic!("{program}: {e}"))
        };
        let p = |name: &str| d.join(name).to_string_lossy().into_owned();
        let mut slurm = Slurm {
            daemons: Vec::new(),
            dir,
        };
        slurm.daemons.push(spawn(
            "munged",
            &[
                "-F".into(),
                "-f".into(),
                format!("--key-file={}", p("munge.key")),
                format!("--socket={}", p("munge.sock")),
                format!("--pid-file={}", p("munged.pid")),
                format!("--log-file={}", p("munged.log")),
                format!("--seed-file={}", p("munged.seed")),
            ],
        ));
        slurm.write_conf();
        for daemon in ["/usr/sbin/slurmctld", "/usr/sbin/slurmd"] {
            let args = ["-D".to_string(), "-f".into(), p("slurm.conf")];
            slurm.daemons.push(spawn(daemon, &args));
        }
        slurm.wait_for_idle();
        slurm
    }

    fn write_conf(&self) {
        let d = self.dir.path();
        let host = String::from_utf8(Command::new("hostname").output().unwrap().stdout).unwrap();
        let host = host.trim();
        let cpus = std::thread::available_parallelism().unwrap().get();
        // The daemons run as whoever runs the test (root in CI), and so do the jobs.
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let user = user.trim();
        let p = |name: &str| d.join(name).to_string_lossy().into_owned();
        let conf = format!(
            "ClusterName=impasto\nSlurmctldHost={host}\nSlurmUser={user}\nSlurmdUser={user}\n\
             AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={sock}\n\
             StateSaveLocation={state}\nSlurmdSpoolDir={spool}\n\
             SlurmctldPidFile={cpid}\nSlurmdPidFile={dpid}\n\
             SlurmctldLogFile={clog}\nSlurmdLogFile={dlog}\n\
             SlurmctldPort={cport}\nSlurmdPort={dport}\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\nSchedulerType=sched/builtin\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\nReturnToService=2\n\
             MpiDefault=none\nKillWait=30\n\
             NodeName={host} CPUs={cpus} RealMemory=1000 State=UNKNOWN\n\
             PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            sock = p("munge.sock"),
            state = p("state"),
            spool = p("spool"),
            cpid = p("slurmctld.pid"),
            dpid = p("slurmd.pid"),
            clog = p("slurmctld.log"),
            dlog = p("slurmd.log"),
            cport = free_port(),
            dport = free_port(),
        );
        std::fs::write(d.join("slurm.conf"), conf).unwrap();
    }

    /// A client command (sbatch, squeue, scancel, sinfo) of this cluster.
    fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.dir.path().join("slurm.conf"));
        c
    }

    fn wait_for_idle(&self) {
        let t0 = Instant::now();
        loop {
            let o = self.client("sinfo").args(["-h", "-o", "%t"]).output();
            if o.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle") {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "slurm never became idle: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn logs(&self) -> String {
        ["slurmctld.log", "slurmd.log", "munged.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Submits `impasto batch` over the manifest as an array of 3 tasks; its job id.
    fn submit(&self, d: &Dir, steps: &str) -> String {
        let bin = env!("CARGO_BIN_EXE_impasto");
        let weights = common::real_weights();
        let wrap = format!(
            "{bin} batch jobs.csv --engine cpu --weights {} --content-layers block2_conv1 \
             --style-layers block1_conv1,block2_conv1 --size 40 --steps {steps} \
             --results results-{{shard}}.jsonl",
            weights.display()
        );
        let o = self
            .client("sbatch")
            .args([
                "--parsable",
                "--array=0-2",
                "-c",
                "1",
                "-o",
                "slurm-%A_%a.out",
                "-D",
            ])
            .arg(d.0.path())
            .args(["--wrap", &wrap])
            .env("XDG_RUNTIME_DIR", d.0.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "sbatch: {}", stderr(&o));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }

    /// Waits until no job of the cluster is pending or running.
    fn wait_for_empty_queue(&self) {
        let t0 = Instant::now();
        loop {
            let o = self
                .client("squeue")
                .args(["-h", "-o", "%i"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&o.stdout).trim().is_empty() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(600),
                "the array never finished"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // The daemons this test started, by their pids, the last started first.
        for child in self.daemons.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every output's lines in all the results files: file name → statuses, in order.
fn all_results(d: &Dir) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for k in 0..3 {
        for (name, status) in results(&d.path(&format!("results-{k}.jsonl"))) {
            out.entry(name).or_default().push(status);
        }
    }
    out
}

#[test]
fn a_slurm_array_writes_every_output_once_and_a_resubmission_finishes_a_cancelled_task() {
    let slurm = Slurm::start();
    let d = Dir::new();
    d.write(
        "jobs.csv",
        &format!(
            "{SIX}{}",
            SIX.lines()
                .skip(1)
                .map(|l| l.replace("out/", "more/"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    );
    // One pass: every output written, each exactly once.
    slurm.submit(&d, "2");
    slurm.wait_for_empty_queue();
    let r = all_results(&d);
    assert_eq!(r.len(), 12, "{r:?}\n{}", slurm.logs());
    assert!(r.values().all(|s| s == &["done"]), "{r:?}");

    // Again with the outputs gone and longer jobs: task 1 is cancelled after its first job.
    std::fs::remove_dir_all(d.path("out")).unwrap();
    std::fs::remove_dir_all(d.path("more")).unwrap();
    for k in 0..3 {
        std::fs::remove_file(d.path(&format!("results-{k}.jsonl"))).unwrap();
    }
    let id = slurm.submit(&d, "60");
    let t0 = Instant::now();
    while !results(&d.path("results-1.jsonl"))
        .iter()
        .any(|r| r.1 == "done")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "task 1 never finished a job"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = slurm
        .client("scancel")
        .arg(format!("{id}_1"))
        .output()
        .unwrap();
    assert!(o.status.success(), "scancel: {}", stderr(&o));
    slurm.wait_for_empty_queue();
    let cancelled = all_results(&d);
    let done_before: Vec<&String> = (cancelled.iter())
        .filter(|(_, s)| s.contains(&"done".to_string()))
        .map(|(n, _)| n)
        .collect();
    assert!(
        done_before.len() < 12,
        "the cancel came too late: {cancelled:?}"
    );
    let outputs = |d: &Dir| {
        ["out", "more"]
            .iter()
            .flat_map(|f| std::fs::read_dir(d.path(f)).into_iter().flatten())
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    // What exists is whole and is what was done: no partial file, no temporary left.
    assert_eq!(
        outputs(&d).len(),
        done_before.len(),
        "{:?} vs {cancelled:?}",
        outputs(&d)
    );

    // Resubmitted: only the missing outputs are made.
    slurm.submit(&d, "60");
    slurm.wait_for_empty_queue();
    let all = all_results(&d);
    assert_eq!(outputs(&d).len(), 12, "{all:?}");
    for (name, statuses) in &all {
        let done = statuses.iter().filter(|s| *s == "done").count();
        assert_eq!(done, 1, "{name} written {done} times: {statuses:?}");
    }
}
