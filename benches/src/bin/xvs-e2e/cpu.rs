//! CPU accounting over a measuring window, from `/proc`.
//!
//! Two views, because the switches spend their time in different places: a userspace switch
//! in its own process (xvsd, ovs-vswitchd: `utime`/`stime` of the process and of each of its
//! threads, from `/proc/PID/stat` and `/proc/PID/task/TID/stat`), the Linux bridge and an XDP
//! program in softirq on whichever CPU delivers the frame. The system-wide per-CPU times of
//! `/proc/stat` (user, system, softirq, ...) cover both, so they are taken for every switch.
//! All of them are in clock ticks of `USER_HZ`, turned into seconds here.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

/// One `cpuN` line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuTicks {
    user: u64,
    nice: u64,
    system: u64,
    idle: u64,
    iowait: u64,
    irq: u64,
    softirq: u64,
    steal: u64,
}

/// Parses the per-CPU lines (`cpu0`, `cpu1`, ...) of `/proc/stat`, in CPU order.
pub(crate) fn parse_proc_stat(text: &str) -> Vec<CpuTicks> {
    let mut cpus: Vec<(usize, CpuTicks)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let index: usize = fields.next()?.strip_prefix("cpu")?.parse().ok()?;
            let mut n = fields.map(|f| f.parse::<u64>().unwrap_or(0));
            let mut next = || n.next().unwrap_or(0);
            Some((
                index,
                CpuTicks {
                    user: next(),
                    nice: next(),
                    system: next(),
                    idle: next(),
                    iowait: next(),
                    irq: next(),
                    softirq: next(),
                    steal: next(),
                },
            ))
        })
        .collect();
    cpus.sort_by_key(|&(i, _)| i);
    cpus.into_iter().map(|(_, t)| t).collect()
}

/// `(comm, utime, stime)` from a `/proc/PID/stat` or `/proc/PID/task/TID/stat` line. The
/// command name is in parentheses and may hold spaces and parentheses itself, so the fields
/// are counted from the last `)`.
pub(crate) fn parse_pid_stat(text: &str) -> Option<(String, u64, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    // After ")": state(3) ppid(4) ... utime(14) stime(15), so utime is the 12th field.
    let mut rest = text.get(close + 1..)?.split_whitespace().skip(11);
    let utime = rest.next()?.parse().ok()?;
    let stime = rest.next()?.parse().ok()?;
    Some((comm, utime, stime))
}

/// A process's times, and its threads' by thread id.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcTicks {
    utime: u64,
    stime: u64,
    threads: BTreeMap<u32, (String, u64, u64)>,
}

impl ProcTicks {
    /// Reads `/proc/PID/stat` and its tasks; `None` if the process is gone.
    pub(crate) fn read(pid: u32) -> Option<ProcTicks> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, utime, stime) = parse_pid_stat(&text)?;
        let mut threads = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for entry in dir.flatten() {
                let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                if let Some(t) = std::fs::read_to_string(entry.path().join("stat"))
                    .ok()
                    .as_deref()
                    .and_then(parse_pid_stat)
                {
                    threads.insert(tid, t);
                }
            }
        }
        Some(ProcTicks {
            utime,
            stime,
            threads,
        })
    }
}

/// What the machine (and the switch's process, if it has one) looked like at one instant.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    at: Instant,
    cpus: Vec<CpuTicks>,
    process: Option<ProcTicks>,
}

impl Snapshot {
    /// Takes one now; `pid` is the switch's process, if any.
    pub(crate) fn take(pid: Option<u32>) -> Snapshot {
        let process = pid.and_then(ProcTicks::read);
        let cpus = parse_proc_stat(&std::fs::read_to_string("/proc/stat").unwrap_or_default());
        Snapshot {
            at: Instant::now(),
            cpus,
            process,
        }
    }
}

/// One CPU's time over a window, in seconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct CpuSeconds {
    /// The CPU number.
    pub(crate) cpu: usize,
    /// User time, nice included.
    pub(crate) user: f64,
    /// System time (threaded NAPI and BPF test runs count here).
    pub(crate) system: f64,
    /// Softirq time (NAPI polls, the bridge, XDP programs of veths).
    pub(crate) softirq: f64,
    /// Hard interrupt time.
    pub(crate) irq: f64,
    /// Idle and iowait.
    pub(crate) idle: f64,
    /// Time the hypervisor took.
    pub(crate) steal: f64,
}

impl CpuSeconds {
    /// Every non-idle second.
    pub(crate) fn busy(&self) -> f64 {
        self.user + self.system + self.softirq + self.irq + self.steal
    }
}

/// One thread's time over a window, in seconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ThreadSeconds {
    /// The thread's name (`comm`).
    pub(crate) name: String,
    /// The thread id.
    pub(crate) tid: u32,
    /// User time.
    pub(crate) user: f64,
    /// System time.
    pub(crate) system: f64,
}

/// The switch process's time over a window, in seconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ProcessSeconds {
    /// User time, all threads.
    pub(crate) user: f64,
    /// System time, all threads.
    pub(crate) system: f64,
    /// Threads that ran during the window, busiest first.
    pub(crate) threads: Vec<ThreadSeconds>,
}

/// CPU time spent over a measuring window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Window {
    /// Wall-clock length of the window.
    pub(crate) seconds: f64,
    /// Per CPU, from `/proc/stat`.
    pub(crate) cpus: Vec<CpuSeconds>,
    /// The switch's process, if it has one.
    pub(crate) process: Option<ProcessSeconds>,
}

impl Window {
    /// The time between two snapshots; `ticks_per_s` is `USER_HZ`.
    pub(crate) fn between(before: &Snapshot, after: &Snapshot, ticks_per_s: f64) -> Window {
        let s = |a: u64, b: u64| b.saturating_sub(a) as f64 / ticks_per_s;
        let cpus = before
            .cpus
            .iter()
            .zip(&after.cpus)
            .enumerate()
            .map(|(cpu, (a, b))| CpuSeconds {
                cpu,
                user: s(a.user + a.nice, b.user + b.nice),
                system: s(a.system, b.system),
                softirq: s(a.softirq, b.softirq),
                irq: s(a.irq, b.irq),
                idle: s(a.idle + a.iowait, b.idle + b.iowait),
                steal: s(a.steal, b.steal),
            })
            .collect();
        let process = match (&before.process, &after.process) {
            (Some(a), Some(b)) => {
                let mut threads: Vec<ThreadSeconds> = b
                    .threads
                    .iter()
                    .map(|(&tid, (name, u, st))| {
                        let (u0, s0) = a.threads.get(&tid).map_or((0, 0), |t| (t.1, t.2));
                        ThreadSeconds {
                            name: name.clone(),
                            tid,
                            user: s(u0, *u),
                            system: s(s0, *st),
                        }
                    })
                    .filter(|t| t.user + t.system > 0.0)
                    .collect();
                threads.sort_by(|x, y| (y.user + y.system).total_cmp(&(x.user + x.system)));
                Some(ProcessSeconds {
                    user: s(a.utime, b.utime),
                    system: s(a.stime, b.stime),
                    threads,
                })
            }
            _ => None,
        };
        Window {
            seconds: after.at.saturating_duration_since(before.at).as_secs_f64(),
            cpus,
            process,
        }
    }
}

/// `USER_HZ`, the unit of `/proc/stat` and `/proc/PID/stat` (100 on every Linux that
/// `getconf` does not contradict).
pub(crate) fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    static PROC_STAT: &str = "cpu  212875 0 54644 492413 4657 0 20274 425 0 0\n\
        cpu1 106674 0 26354 248272 3073 0 7991 212 0 0\n\
        cpu0 106200 5 28289 244141 1583 7 12283 213 0 0\n\
        intr 123 0 0\n";

    #[test]
    fn parses_per_cpu_lines_in_order() {
        let cpus = parse_proc_stat(PROC_STAT);
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].user, 106200);
        assert_eq!(cpus[0].nice, 5);
        assert_eq!(cpus[0].irq, 7);
        assert_eq!(cpus[0].softirq, 12283);
        assert_eq!(cpus[1].system, 26354);
        assert_eq!(cpus[1].steal, 212);
    }

    #[test]
    fn parses_pid_stat_with_odd_names() {
        let line = "14797 (pmd-c01/id:6) R 1 14786 14786 0 -1 4194560 1 0 0 0 \
                    321 45 0 0 20 0 9 0 4174 1000 20 18446744073709551615";
        assert_eq!(
            parse_pid_stat(line),
            Some(("pmd-c01/id:6".to_owned(), 321, 45))
        );
        let tricky = "7 (a) b (c)) S 1 7 7 0 -1 0 0 0 0 0 11 22 0 0";
        assert_eq!(
            parse_pid_stat(tricky),
            Some(("a) b (c)".to_owned(), 11, 22))
        );
        assert_eq!(parse_pid_stat("garbage"), None);
    }

    #[test]
    fn window_subtracts_and_scales() {
        let at = Instant::now();
        let tick = |user, softirq| CpuTicks {
            user,
            softirq,
            ..CpuTicks::default()
        };
        let mut threads = BTreeMap::new();
        threads.insert(2, ("worker".to_owned(), 100, 10));
        let before = Snapshot {
            at,
            cpus: vec![tick(100, 50), tick(0, 0)],
            process: Some(ProcTicks {
                utime: 100,
                stime: 10,
                threads: threads.clone(),
            }),
        };
        threads.insert(2, ("worker".to_owned(), 300, 30));
        threads.insert(3, ("idle".to_owned(), 0, 0));
        let after = Snapshot {
            at,
            cpus: vec![tick(150, 250), tick(100, 0)],
            process: Some(ProcTicks {
                utime: 300,
                stime: 30,
                threads,
            }),
        };
        let w = Window::between(&before, &after, 100.0);
        assert_eq!(w.cpus[0].user, 0.5);
        assert_eq!(w.cpus[0].softirq, 2.0);
        assert_eq!(w.cpus[1].busy(), 1.0);
        let p = w.process.unwrap();
        assert_eq!((p.user, p.system), (2.0, 0.2));
        assert_eq!(p.threads.len(), 1, "threads that did not run are left out");
        assert_eq!(p.threads[0].name, "worker");
    }
}
