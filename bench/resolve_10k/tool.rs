//! The helper of `bench/resolve_10k.sh`, built by it with plain `rustc` (std only, linked
//! statically so that its start-up is a few hundred microseconds and not the measurement).
//!
//! - `tool backend`: a secret backend. Reads one request on stdin and answers every handle of
//!   its `secrets` list with a fixed 64-byte value. It scans the list instead of parsing the
//!   whole request (the requests it gets come from keyturn or from `tool payload`).
//! - `tool document N PREFIX`: a flat YAML mapping of N keys, each value `PREFIX[dbNNNNN]`:
//!   with `ENC` every value is a handle, with `VAL` none is (same size, same shape).
//! - `tool payload N`: the request keyturn sends for that document (for the bare backend run).
//! - `tool measure STDIN STDOUT COMMAND [ARGS...]`: runs COMMAND with STDIN and STDOUT
//!   redirected, and prints `user_us sys_us maxrss_kib` of the process and every descendant it
//!   waited for (`wait4`'s resource usage, in microseconds: GNU time prints CPU time in 10 ms
//!   steps, too coarse for runs of 2-20 ms).

use std::io::{Read, Write};
use std::process::{Command, ExitCode, Stdio};

/// What every handle resolves to.
const VALUE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = |at: usize| args.get(at).and_then(|n| n.parse::<usize>().ok());
    let result = match args.first().map(String::as_str) {
        Some("backend") => backend(),
        Some("document") => match (count(1), args.get(2)) {
            (Some(n), Some(prefix)) => document(n, prefix),
            _ => Err("usage: tool document N PREFIX".to_owned()),
        },
        Some("payload") => match count(1) {
            Some(n) => payload(n),
            None => Err("usage: tool payload N".to_owned()),
        },
        Some("measure") if args.len() >= 4 => measure(&args[1], &args[2], &args[3..]),
        _ => Err("usage: tool backend | document N PREFIX | payload N | measure IN OUT CMD...".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tool: {message}");
            ExitCode::FAILURE
        }
    }
}

fn handle(i: usize) -> String {
    format!("db{i:05}")
}

fn document(n: usize, prefix: &str) -> Result<(), String> {
    let mut out = String::with_capacity(n * 24);
    for i in 0..n {
        out.push_str(&format!("key{i:05}: {prefix}[{}]\n", handle(i)));
    }
    std::io::stdout().write_all(out.as_bytes()).map_err(|e| e.to_string())
}

fn payload(n: usize) -> Result<(), String> {
    let secrets: Vec<String> = (0..n).map(|i| format!("\"{}\"", handle(i))).collect();
    let request = format!(
        "{{\"version\":\"1.1\",\"secrets\":[{}],\"secret_backend_timeout\":30}}",
        secrets.join(",")
    );
    std::io::stdout().write_all(request.as_bytes()).map_err(|e| e.to_string())
}

fn backend() -> Result<(), String> {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).map_err(|e| e.to_string())?;
    const KEY: &[u8] = b"\"secrets\":[";
    let start = input
        .windows(KEY.len())
        .position(|w| w == KEY)
        .ok_or("no secrets list")?
        + KEY.len();
    let mut out = Vec::with_capacity(input.len() * 4);
    out.push(b'{');
    let mut at = start;
    let mut first = true;
    // Each element is a JSON string, copied as written (escapes included) into the answer.
    while at < input.len() && input[at] != b']' {
        if input[at] != b'"' {
            at += 1;
            continue;
        }
        let begin = at;
        at += 1;
        while at < input.len() && input[at] != b'"' {
            at += if input[at] == b'\\' { 2 } else { 1 };
        }
        at += 1;
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(input.get(begin..at).ok_or("unterminated string")?);
        out.extend_from_slice(b":{\"value\":\"");
        out.extend_from_slice(VALUE.as_bytes());
        out.extend_from_slice(b"\",\"error\":null}");
    }
    out.push(b'}');
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out).and_then(|()| stdout.flush()).map_err(|e| e.to_string())
}

/// `struct rusage` of Linux on 64-bit targets: two `timeval`s, then 14 `long`s.
#[repr(C)]
struct Rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    maxrss: i64,
    rest: [i64; 13],
}

unsafe extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, usage: *mut Rusage) -> i32;
}

fn measure(stdin: &str, stdout: &str, command: &[String]) -> Result<(), String> {
    let input = std::fs::File::open(stdin).map_err(|e| format!("{stdin}: {e}"))?;
    let output = std::fs::File::create(stdout).map_err(|e| format!("{stdout}: {e}"))?;
    let child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::from(input))
        .stdout(Stdio::from(output))
        .spawn()
        .map_err(|e| format!("{}: {e}", command[0]))?;
    let mut status = 0;
    let mut usage = Rusage {
        utime: [0; 2],
        stime: [0; 2],
        maxrss: 0,
        rest: [0; 13],
    };
    // SAFETY: `status` and `usage` are valid for writes, and `usage` has the layout of the
    // kernel's `struct rusage` on 64-bit Linux. The child is ours and not waited for elsewhere
    // (`Child` only reaps in `wait`, which is never called).
    let pid = unsafe { wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    // Anything but a normal exit with 0 (an incomplete resolve too) is a broken measurement.
    if status != 0 {
        return Err(format!("{} ended with wait status {status:#x}", command[0]));
    }
    let us = |t: [i64; 2]| t[0] * 1_000_000 + t[1];
    println!("{} {} {}", us(usage.utime), us(usage.stime), usage.maxrss);
    Ok(())
}
