//! Processes defined by a type with a `run` method (Python's `class Worker(Process)`), under every
//! start method.

use multiproc::{current_process, Connection, Pipe, Process, ProcessBuilder, Queue, Run, StartMethod};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver];

/// Carries its state and a queue to report on.
#[derive(Serialize, Deserialize)]
struct Summer {
    label: String,
    items: Vec<u64>,
    out: Queue<(String, u64, String)>,
    runs: u32,
}

impl Run for Summer {
    type Output = ();
    fn run(&mut self) {
        self.runs += 1;
        let total = self.items.iter().sum::<u64>() * u64::from(self.runs);
        self.out.put((self.label.clone(), total, current_process().name().to_string())).unwrap();
    }
}

#[test]
fn a_run_type_starts_as_a_process_under_every_method() {
    for m in METHODS {
        let out = Queue::new().unwrap();
        let s = Summer { label: format!("via {m}"), items: vec![1, 2, 3, 4], out: out.clone(), runs: 0 };
        let p = ProcessBuilder::from_run(&s).name(format!("summer-{m}")).start_method(m).start().unwrap();
        let got = out.get().unwrap();
        assert_eq!(got, (format!("via {m}"), 10, format!("summer-{m}")), "{m}");
        assert_eq!(p.join().unwrap().exitcode(), 0, "{m}");
        // The child ran a copy: this value is untouched.
        assert_eq!(s.runs, 0);
    }
}

#[test]
fn run_can_be_called_in_the_current_process() {
    let out = Queue::new().unwrap();
    let mut s = Summer { label: "here".into(), items: vec![5, 5], out: out.clone(), runs: 0 };
    s.run();
    s.run();
    assert_eq!(s.runs, 2);
    assert_eq!(out.get().unwrap(), ("here".to_string(), 10, current_process().name().to_string()));
    assert_eq!(out.get().unwrap(), ("here".to_string(), 20, current_process().name().to_string()));
    // The state it reached here travels to a child started afterwards.
    let p = ProcessBuilder::from_run(&s).start_method(StartMethod::Spawn).start().unwrap();
    assert_eq!(out.get().unwrap().1, 30);
    assert!(p.join().unwrap().success());
}

/// Exits as its `code` says: `Ok`, an `Err`, or a panic.
#[derive(Serialize, Deserialize)]
struct Outcome {
    code: u8,
}

impl Run for Outcome {
    type Output = Result<(), String>;
    fn run(&mut self) -> Result<(), String> {
        match self.code {
            0 => Ok(()),
            1 => Err("told to fail".into()),
            _ => panic!("told to panic"),
        }
    }
}

#[test]
fn run_output_and_panics_set_the_exit_code() {
    for m in METHODS {
        for (code, want) in [(0u8, 0), (1, 1), (2, 1)] {
            let p = ProcessBuilder::from_run(&Outcome { code }).start_method(m).start().unwrap();
            assert_eq!(p.join().unwrap().exitcode(), want, "{m} code {code}");
        }
    }
}

/// A generic type: each instantiation is a different entry the child must find.
#[derive(Serialize, Deserialize)]
#[serde(bound = "T: Serialize + DeserializeOwned")]
struct Echo<T> {
    value: T,
    conn: Connection,
}

impl<T: Serialize + DeserializeOwned + 'static> Run for Echo<T> {
    type Output = multiproc::Result<()>;
    fn run(&mut self) -> multiproc::Result<()> {
        self.conn.send(&self.value)?;
        let back: T = self.conn.recv()?;
        self.conn.send(&back)
    }
}

#[test]
fn generic_run_types_with_handles_find_their_own_code() {
    for m in METHODS {
        let (a, b) = Pipe::duplex().unwrap();
        let p1 = ProcessBuilder::from_run(&Echo { value: 7u32, conn: b }).start_method(m).start().unwrap();
        let (c, d) = Pipe::duplex().unwrap();
        let p2 = ProcessBuilder::from_run(&Echo { value: "seven".to_string(), conn: d })
            .start_method(m)
            .start()
            .unwrap();
        assert_eq!(a.recv::<u32>().unwrap(), 7, "{m}");
        assert_eq!(c.recv::<String>().unwrap(), "seven", "{m}");
        a.send(&70u32).unwrap();
        c.send(&"seventy".to_string()).unwrap();
        assert_eq!(a.recv::<u32>().unwrap(), 70, "{m}");
        assert_eq!(c.recv::<String>().unwrap(), "seventy", "{m}");
        assert!(p1.join().unwrap().success(), "{m}");
        assert!(p2.join().unwrap().success(), "{m}");
    }
}

#[test]
fn a_run_process_is_an_ordinary_process_handle() {
    let p = Process::from_run(&Outcome { code: 0 });
    // Not started yet: the same errors as any process object.
    assert!(p.join().is_err());
    p.start().unwrap();
    assert!(p.start().is_err(), "starting twice is an error");
    assert!(p.join().unwrap().success());
    assert!(!p.is_alive());
    assert_eq!(p.exitcode(), Some(0));
}
