//! Parse and render a ~10 MB document with 10,000 handles, against the parser floors.
//!
//! YAML: (a) the saphyr-parser event stream alone (what `Document::parse` consumes), and for
//! reference saphyr's `MarkedYaml` tree; (b) `Document::parse`; (c) parse + render with every
//! handle resolved. JSON: (a) `serde_json::Value`; (b) and (c) the same. Target: (c) <= 1.5 x (a).

// A benchmark: a panic is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::panic, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::fmt::Write;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use keyturn::{Document, Format};
use saphyr::{LoadableYamlNode, MarkedYaml};

const ENTRIES: usize = 30_000;
const HANDLE_EVERY: usize = 3;

/// A YAML configuration: a list of instances, every third with a secret, comments, unicode.
fn yaml_text() -> String {
    let mut text = String::from(
        "# generated for the document benchmark\ninit_config:\n  timeout: 30\ninstances:\n",
    );
    for index in 0..ENTRIES {
        let _ = write!(
            text,
            "  - name: service-{index:06}\n    host: host-{index}.example.com  # primary\n    port: {port}\n    enabled: true\n    ratio: 0.75\n    tags: [env:prod, team:core, \"région:eu\"]\n    description: \"Ingests metrics from the café cluster, shard {index}\"\n    options:\n      retries: 3\n      path: /var/lib/service/{index}\n",
            port = 1024 + index % 50_000,
        );
        if index % HANDLE_EVERY == 0 {
            let _ = writeln!(text, "    password: ENC[db/service-{index:06}/password]");
        } else {
            let _ = writeln!(text, "    user: service_user_{index}");
        }
    }
    text
}

/// The same data as JSON.
fn json_text() -> String {
    let mut text = String::from("{\"init_config\": {\"timeout\": 30}, \"instances\": [\n");
    for index in 0..ENTRIES {
        let secret = if index % HANDLE_EVERY == 0 {
            format!("\"password\": \"ENC[db/service-{index:06}/password]\"")
        } else {
            format!("\"user\": \"service_user_{index}\"")
        };
        let _ = writeln!(
            text,
            "{comma}  {{\"name\": \"service-{index:06}\", \"host\": \"host-{index}.example.com\", \"port\": {port}, \"enabled\": true, \"ratio\": 0.75, \"tags\": [\"env:prod\", \"team:core\", \"région:eu\"], \"description\": \"Ingests metrics from the café cluster, shard {index}\", \"options\": {{\"retries\": 3, \"path\": \"/var/lib/service/{index}\"}}, {secret}}}",
            comma = if index == 0 { "" } else { "," },
            port = 1024 + index % 50_000,
        );
    }
    text.push_str("]}\n");
    text
}

fn resolved_values(text: &str, format: Format) -> HashMap<String, String> {
    let document = match Document::parse(text.to_owned(), format) {
        Ok(document) => document,
        Err(error) => panic!("benchmark document does not parse: {error}"),
    };
    assert_eq!(document.sites().len(), ENTRIES / HANDLE_EVERY);
    document
        .handles()
        .into_iter()
        .map(|handle| (handle.to_owned(), format!("s3cr3t: \"{handle}\"\n")))
        .collect()
}

/// (b) and (c) for `text`.
fn bench_document(
    group: &mut BenchmarkGroup<'_, WallTime>,
    text: &str,
    format: Format,
    values: &HashMap<String, String>,
) {
    let parse = |text: String| match Document::parse(text, format) {
        Ok(document) => document,
        Err(error) => panic!("benchmark document does not parse: {error}"),
    };
    group.bench_function("b_document_parse", |b| {
        b.iter_batched(
            || text.to_owned(),
            |text| parse(text).sites().len(),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("c_parse_and_render", |b| {
        b.iter_batched(
            || text.to_owned(),
            |text| {
                parse(text)
                    .render(|handle| values.get(handle).map(String::as_str))
                    .len()
            },
            BatchSize::LargeInput,
        )
    });
}

fn yaml(c: &mut Criterion) {
    let text = yaml_text();
    let values = resolved_values(&text, Format::Yaml);
    let mut group = c.benchmark_group(format!("yaml_{}MB", text.len() / 1_000_000));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    group.bench_function("a_floor_parser_events", |b| {
        b.iter(|| {
            let mut events = 0usize;
            for event in saphyr_parser::Parser::new_from_str(black_box(&text)) {
                if event.is_err() {
                    panic!("benchmark document does not parse");
                }
                events += 1;
            }
            events
        })
    });
    group.bench_function("a_reference_marked_yaml", |b| {
        b.iter(|| MarkedYaml::load_from_str(black_box(&text)).map(|documents| documents.len()))
    });
    bench_document(&mut group, &text, Format::Yaml, &values);
    group.finish();
}

fn json(c: &mut Criterion) {
    let text = json_text();
    let values = resolved_values(&text, Format::Json);
    let mut group = c.benchmark_group(format!("json_{}MB", text.len() / 1_000_000));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("a_floor_serde_json_value", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&text)).is_ok())
    });
    bench_document(&mut group, &text, Format::Json, &values);
    group.finish();
}

criterion_group!(benches, yaml, json);
criterion_main!(benches);
