//! The packaging under `docker/` checked against the built binary and real Redis
//! processes, since no Docker engine or Kubernetes cluster runs here.
//!
//! Checked: every config it ships passes `check-config`; the command line each
//! file gives the binary uses only flags `--help` lists and is accepted as a
//! whole; ports, probe paths, scrape annotations and grace periods agree with
//! the effective config; the sentinel template names the master the sidecar
//! asks for; the compose file's `redis-server` arguments and the sentinel
//! entrypoint start real `redis-server` and `redis-sentinel` processes that
//! find each other. With PyYAML present, the YAML files are also parsed for
//! where things sit (skipped with a note otherwise).
//!
//! The files are read with plain string handling: enough YAML for these files
//! (block mappings, `- ` lists, flow lists), not a YAML parser.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{parse_one, sidecar_command, wait_for, RawConn, RedisServer, Value};

const DOCKERFILE: &str = "docker/Dockerfile";
const COMPOSE: &str = "docker/compose.yml";
const HEALTHCHECK: &str = "docker/healthcheck.sh";
const SENTINEL_TEMPLATE: &str = "docker/sentinel/sentinel.conf";
const SENTINEL_ENTRYPOINT: &str = "docker/sentinel/entrypoint.sh";
const CONFIGMAP: &str = "docker/k8s/configmap.yaml";
const SECRET: &str = "docker/k8s/secret.yaml";
const DEPLOYMENT: &str = "docker/k8s/deployment.yaml";
/// The container in `deployment.yaml` that runs the sidecar.
const K8S_CONTAINER: &str = "resp-sidecar";

// ---------------------------------------------------------------------------
// Files and just enough YAML
// ---------------------------------------------------------------------------

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The lines nested under the first line of `lines` equal (trimmed) to
/// `head`: the following lines indented deeper than it, blank and comment
/// lines included. None when no line is `head`.
fn try_nested<'a>(lines: &[&'a str], head: &str) -> Option<Vec<&'a str>> {
    let at = lines.iter().position(|l| l.trim() == head)?;
    let depth = indent(lines[at]);
    let block = lines[at + 1..]
        .iter()
        .take_while(|l| is_blank(l) || indent(l) > depth)
        .copied()
        .collect();
    Some(block)
}

fn nested<'a>(lines: &[&'a str], head: &str) -> Vec<&'a str> {
    try_nested(lines, head).unwrap_or_else(|| panic!("no line `{head}`"))
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// A line's `key: value` with an optional leading `- `, value unquoted.
fn key_value(line: &str) -> Option<(&str, String)> {
    let t = line.trim_start();
    let t = t.strip_prefix("- ").unwrap_or(t);
    let (key, value) = t.split_once(':')?;
    Some((key.trim(), unquote(value.trim())))
}

fn unquote(s: &str) -> String {
    let quoted = s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')));
    if quoted {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

/// Values of every `key:` in `lines`, in order.
fn scalars(lines: &[&str], key: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !is_blank(l))
        .filter_map(|l| key_value(l))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The one value of `key:` in `lines`.
fn scalar(lines: &[&str], key: &str) -> String {
    let mut all = scalars(lines, key);
    assert_eq!(all.len(), 1, "want one `{key}:`, found {all:?}");
    all.remove(0)
}

/// A flow list such as `["CMD", "a,b", c]`, quotes respected.
fn flow_list(s: &str) -> Vec<String> {
    let inner = s.trim().strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    let inner = inner.unwrap_or_else(|| panic!("not a flow list: {s}"));
    let (mut items, mut item, mut quote) = (Vec::new(), String::new(), None);
    for c in inner.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ',') => items.push(std::mem::take(&mut item).trim().to_string()),
            _ => item.push(c),
        }
    }
    if !item.trim().is_empty() {
        items.push(item.trim().to_string());
    }
    items
}

/// The items of the list `key:` in `lines`: a flow list on the key's line, or
/// the `- item` lines after it. None when `lines` has no such key.
fn list(lines: &[&str], key: &str) -> Option<Vec<String>> {
    let at = lines
        .iter()
        .position(|l| !is_blank(l) && key_value(l).is_some_and(|(k, _)| k == key))?;
    let (_, value) = key_value(lines[at])?;
    if !value.is_empty() {
        return Some(flow_list(&value));
    }
    let depth = indent(lines[at]);
    let items = lines[at + 1..]
        .iter()
        .filter(|l| !is_blank(l))
        .take_while(|l| indent(l) >= depth && l.trim_start().starts_with("- "))
        .map(|l| unquote(l.trim_start()[2..].trim()))
        .collect();
    Some(items)
}

/// The compose file's services: name -> the lines nested under it.
fn compose_services(compose: &str) -> BTreeMap<String, Vec<&str>> {
    let services = nested(&lines(compose), "services:");
    let mut out = BTreeMap::new();
    for (at, line) in services.iter().enumerate() {
        if !is_blank(line) && indent(line) == 2 {
            let name = line.trim().trim_end_matches(':').to_string();
            out.insert(name, nested(&services[at..], line.trim()));
        }
    }
    out
}

/// One service of the compose file.
fn compose_service<'a>(compose: &'a str, name: &str) -> Vec<&'a str> {
    compose_services(compose)
        .remove(name)
        .unwrap_or_else(|| panic!("no service {name} in {COMPOSE}"))
}

/// The block of the list item `- name: NAME` in `text`.
fn named_item<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    nested(&lines(text), &format!("- name: {name}"))
}

/// The file named `key` in the ConfigMap: its `key: |` block, de-indented.
fn configmap_file(configmap: &str, key: &str) -> String {
    let block = nested(&lines(configmap), &format!("{key}: |"));
    let depth = block
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .min()
        .unwrap_or_else(|| panic!("empty `{key}` in the ConfigMap"));
    let lines: Vec<&str> = block.iter().map(|l| l.get(depth..).unwrap_or("")).collect();
    lines.join("\n") + "\n"
}

/// The JSON-array form of a Dockerfile instruction, e.g. `CMD [...]`.
fn dockerfile_exec(dockerfile: &str, instruction: &str) -> Vec<String> {
    let prefix = format!("{instruction} ");
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {instruction} in the Dockerfile"));
    flow_list(&line[prefix.len()..])
}

/// `COPY SRC DST` of the Dockerfile (without --from), as DST -> SRC.
fn dockerfile_copies(dockerfile: &str) -> BTreeMap<String, String> {
    dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .map(|rest| {
            rest.split_whitespace()
                .filter(|w| !w.starts_with("--chmod"))
                .collect::<Vec<_>>()
        })
        .filter(|words| words.len() == 2 && !words[0].starts_with("--"))
        .map(|words| (words[1].to_string(), words[0].to_string()))
        .collect()
}

/// A duration as the configs write it ("10s", "500ms", "2m", "1h") or plain seconds.
fn seconds(text: &str) -> f64 {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let n: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("duration {text:?}"));
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => panic!("duration unit in {text:?}"),
    };
    n * scale
}

fn port_of(addr: &str) -> u16 {
    let (_, port) = addr
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("no port in {addr:?}"));
    port.parse().unwrap_or_else(|_| panic!("port of {addr:?}"))
}

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// Every `--flag` that `resp-sidecar --help` lists.
fn help_flags() -> BTreeSet<String> {
    let out = sidecar_command()
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success(), "--help failed");
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.to_string())
        .collect()
}

/// Runs `check-config` with `args`, asserts exit 0, and returns the effective
/// config it prints.
fn check_config(args: &[String], what: &str) -> toml::Table {
    let out = sidecar_command()
        .arg("check-config")
        .args(args)
        .output()
        .expect("run check-config");
    assert_eq!(
        out.status.code(),
        Some(0),
        "check-config {args:?} ({what}) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.parse()
        .unwrap_or_else(|e| panic!("effective config of {what} is not TOML: {e}\n{text}"))
}

/// `effective["section"]["key"]` as a string.
fn get<'a>(effective: &'a toml::Table, section: &str, key: &str) -> &'a str {
    effective
        .get(section)
        .and_then(|s| s.get(key))
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("{section}.{key} missing from the effective config"))
}

/// The flags in `args` (`--name` or `--name=value`), each of which `--help` must list.
fn assert_known_flags(args: &[String], what: &str) {
    let known = help_flags();
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        let flag = arg.split('=').next().unwrap_or(arg);
        assert!(
            known.contains(flag),
            "{what} passes {flag}, which `resp-sidecar --help` does not list ({known:?})"
        );
    }
}

/// `args` with every path in the container replaced by the repository file it
/// holds (`files`: container path -> local path).
fn localise(args: &[String], files: &BTreeMap<String, PathBuf>) -> Vec<String> {
    args.iter()
        .map(|a| match files.get(a) {
            Some(local) => local.display().to_string(),
            None => a.clone(),
        })
        .collect()
}

/// The image's files: `COPY` destinations -> repository paths.
fn image_files() -> BTreeMap<String, PathBuf> {
    dockerfile_copies(&read(DOCKERFILE))
        .into_iter()
        .map(|(dst, src)| (dst, repo(&src)))
        .collect()
}

/// What the image runs by default: ENTRYPOINT must be the binary; CMD its args.
fn dockerfile_args() -> Vec<String> {
    let dockerfile = read(DOCKERFILE);
    assert_eq!(
        dockerfile_exec(&dockerfile, "ENTRYPOINT"),
        ["resp-sidecar"],
        "the image's ENTRYPOINT"
    );
    dockerfile_exec(&dockerfile, "CMD")
}

/// The sidecar service's arguments in compose.yml (the image's ENTRYPOINT stays).
fn compose_args() -> Vec<String> {
    let compose = read(COMPOSE);
    let service = compose_service(&compose, "sidecar");
    assert!(
        list(&service, "entrypoint").is_none(),
        "compose must keep the ENTRYPOINT"
    );
    list(&service, "command").expect("the sidecar service has a command")
}

/// The sidecar container's arguments in deployment.yaml (no `command:`: the
/// image's ENTRYPOINT stays).
fn k8s_args() -> Vec<String> {
    let deployment = read(DEPLOYMENT);
    let container = named_item(&deployment, K8S_CONTAINER);
    assert!(
        list(&container, "command").is_none(),
        "the pod must keep the ENTRYPOINT"
    );
    list(&container, "args").expect("the sidecar container has args")
}

/// The ConfigMap's files written to `dir`, keyed by where the pod mounts them.
fn k8s_files(dir: &Path) -> BTreeMap<String, PathBuf> {
    let deployment = read(DEPLOYMENT);
    let container = named_item(&deployment, K8S_CONTAINER);
    let mount = scalar(&container, "mountPath");
    let configmap = read(CONFIGMAP);
    let mut files = BTreeMap::new();
    for arg in k8s_args() {
        if let Some(key) = arg.strip_prefix(&format!("{mount}/")) {
            let local = dir.join(key);
            std::fs::write(&local, configmap_file(&configmap, key)).expect("write config");
            files.insert(arg.clone(), local);
        }
    }
    assert!(
        !files.is_empty(),
        "no arg of the pod names a file under {mount}"
    );
    files
}

/// The effective config of the sidecar as the compose file runs it.
fn compose_effective() -> toml::Table {
    check_config(&localise(&compose_args(), &image_files()), COMPOSE)
}

/// The effective config of the sidecar as the Deployment runs it.
fn k8s_effective() -> toml::Table {
    let dir = tempfile::TempDir::new().expect("tempdir");
    check_config(&localise(&k8s_args(), &k8s_files(dir.path())), DEPLOYMENT)
}

// ---------------------------------------------------------------------------
// Configs and command lines
// ---------------------------------------------------------------------------

fn toml_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            toml_files_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
}

#[test]
fn every_config_under_docker_passes_check_config() {
    let mut files = Vec::new();
    toml_files_under(&repo("docker"), &mut files);
    assert!(!files.is_empty(), "no .toml under docker/");
    for file in &files {
        check_config(
            &["--config".into(), file.display().to_string()],
            "a file under docker/",
        );
    }
    let dir = tempfile::TempDir::new().expect("tempdir");
    let embedded = dir.path().join("sidecar.toml");
    std::fs::write(&embedded, configmap_file(&read(CONFIGMAP), "sidecar.toml")).expect("write");
    let effective = check_config(
        &["--config".into(), embedded.display().to_string()],
        CONFIGMAP,
    );
    assert_eq!(get(&effective, "upstream", "mode"), "sentinel");
    let namespaces = effective
        .get("namespace")
        .and_then(|n| n.as_array())
        .expect("[[namespace]] tables");
    let by_name = |name: &str| {
        namespaces
            .iter()
            .find(|n| n.get("name").and_then(|v| v.as_str()) == Some(name))
            .unwrap_or_else(|| panic!("no namespace {name} in the ConfigMap"))
    };
    for name in ["session", "lock"] {
        assert_eq!(
            by_name(name)["must_not_evict"].as_bool(),
            Some(true),
            "{name}"
        );
    }
    assert_eq!(by_name("cache")["flush"].as_str(), Some("allow"));
}

#[test]
fn every_command_line_uses_real_flags_and_is_accepted() {
    let dockerfile = dockerfile_args();
    let compose = compose_args();
    let k8s = k8s_args();
    for (args, what) in [
        (&dockerfile, DOCKERFILE),
        (&compose, COMPOSE),
        (&k8s, DEPLOYMENT),
    ] {
        assert!(
            args.iter().any(|a| a.starts_with("--")),
            "{what}: no flags found"
        );
        assert_known_flags(args, what);
    }
    let image = check_config(&localise(&dockerfile, &image_files()), DOCKERFILE);
    assert_eq!(get(&image, "server", "listen"), "127.0.0.1:6380");
    let compose = compose_effective();
    assert_eq!(get(&compose, "server", "listen"), "0.0.0.0:6380");
    assert_eq!(get(&compose, "upstream", "mode"), "sentinel");
    assert_eq!(get(&k8s_effective(), "upstream", "mode"), "sentinel");
}

/// The sidecar's environment in compose and the pod names only variables
/// the binary reads.
#[test]
fn environment_names_are_the_ones_the_binary_reads() {
    const READ: [&str; 5] = [
        "REDIS_URL",
        "REDIS_PASSWORD",
        "REDIS_TLS_ENABLED",
        "SIDECAR_LISTEN",
        "RUST_LOG",
    ];
    let compose = read(COMPOSE);
    let service = compose_service(&compose, "sidecar");
    let env = nested(&service, "environment:");
    let compose_names: Vec<String> = env
        .iter()
        .filter(|l| !is_blank(l))
        .filter_map(|l| key_value(l).map(|(k, _)| k.to_string()))
        .collect();
    let deployment = read(DEPLOYMENT);
    let k8s_names = scalars(&named_item(&deployment, K8S_CONTAINER), "name")
        .into_iter()
        .filter(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
    for name in compose_names.into_iter().chain(k8s_names) {
        assert!(READ.contains(&name.as_str()), "the sidecar is given {name}");
    }
}

// ---------------------------------------------------------------------------
// Ports, probes, annotations, grace periods
// ---------------------------------------------------------------------------

#[test]
fn compose_ports_and_healthcheck_match_the_config() {
    let effective = compose_effective();
    let listen = port_of(get(&effective, "server", "listen"));
    let admin = port_of(get(&effective, "admin", "listen"));
    let compose = read(COMPOSE);
    let service = compose_service(&compose, "sidecar");
    let ports = list(&service, "ports").expect("sidecar ports");
    for port in [listen, admin] {
        let want = format!("127.0.0.1:{port}:{port}");
        assert!(
            ports.contains(&want),
            "compose publishes {ports:?}, want {want}"
        );
    }
    for (name, block) in compose_services(&compose) {
        for published in list(&block, "ports").into_iter().flatten() {
            assert!(
                published.starts_with("127.0.0.1:"),
                "{name}: {published} not on loopback"
            );
        }
    }
    let test = list(&service, "test").expect("sidecar healthcheck");
    assert_eq!(test[..3], ["CMD", "resp-sidecar-healthcheck", "/readyz"]);
    assert_eq!(port_of(&test[3]), admin, "healthcheck address {}", test[3]);
    let grace = seconds(get(&effective, "server", "shutdown_grace"));
    let stop = seconds(&scalar(&service, "stop_grace_period"));
    assert!(
        stop > grace,
        "stop_grace_period {stop}s <= shutdown_grace {grace}s"
    );
}

#[test]
fn image_exposes_the_ports_and_its_healthcheck_defaults_to_the_admin_port() {
    let effective = check_config(&localise(&dockerfile_args(), &image_files()), DOCKERFILE);
    let dockerfile = read(DOCKERFILE);
    let expose: Vec<u16> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|ports| ports.split_whitespace().map(|p| p.parse().expect("port")))
        .collect();
    let admin = port_of(get(&effective, "admin", "listen"));
    let listen = port_of(get(&effective, "server", "listen"));
    assert!(
        expose.contains(&admin) && expose.contains(&listen),
        "EXPOSE {expose:?}"
    );
    let files = image_files();
    let installed = files.get("/usr/local/bin/resp-sidecar-healthcheck");
    assert_eq!(
        installed,
        Some(&repo(HEALTHCHECK)),
        "the image installs {HEALTHCHECK}"
    );
    let script = read(HEALTHCHECK);
    let default = format!("addr=${{2:-127.0.0.1:{admin}}}");
    assert!(
        script.contains(&default),
        "{HEALTHCHECK} should default to {default}"
    );
}

/// `port:` of a probe is the admin container port, by name or number.
fn assert_probe(container: &[&str], probe: &str, path: &str, admin: u16) {
    let block = nested(container, &format!("{probe}:"));
    assert_eq!(scalar(&block, "path"), path, "{probe} path");
    let port = scalar(&block, "port");
    let number: u16 = match try_nested(container, &format!("- name: {port}")) {
        Some(named) => scalar(&named, "containerPort")
            .parse()
            .expect("containerPort"),
        None => port
            .parse()
            .unwrap_or_else(|_| panic!("{probe} port {port}")),
    };
    assert_eq!(number, admin, "{probe} port {port}");
}

#[test]
fn pod_probes_annotations_and_grace_match_the_config() {
    let effective = k8s_effective();
    let admin = port_of(get(&effective, "admin", "listen"));
    let deployment = read(DEPLOYMENT);
    let container = named_item(&deployment, K8S_CONTAINER);
    assert_eq!(
        scalar(&container, "restartPolicy"),
        "Always",
        "a native sidecar"
    );
    assert_probe(&container, "startupProbe", "/livez", admin);
    assert_probe(&container, "livenessProbe", "/livez", admin);
    assert_probe(&container, "readinessProbe", "/readyz", admin);
    let annotations = nested(&lines(&deployment), "annotations:");
    assert_eq!(scalar(&annotations, "prometheus.io/scrape"), "true");
    assert_eq!(
        scalar(&annotations, "prometheus.io/port"),
        admin.to_string()
    );
    assert_eq!(scalar(&annotations, "prometheus.io/path"), "/metrics");
    let grace = seconds(get(&effective, "server", "shutdown_grace"));
    let termination = seconds(&scalar(
        &lines(&deployment),
        "terminationGracePeriodSeconds",
    ));
    assert!(
        termination > grace,
        "terminationGracePeriodSeconds {termination} <= {grace}"
    );
    // The app reaches the sidecar where it listens: the pod's loopback.
    let listen = get(&effective, "server", "listen");
    assert!(listen.starts_with("127.0.0.1:"), "server.listen {listen}");
    let app = named_item(&deployment, "REDIS_URL");
    assert_eq!(scalar(&app, "value"), format!("redis://{listen}"));
}

#[test]
fn pod_secret_and_configmap_names_match_their_manifests() {
    let deployment = read(DEPLOYMENT);
    let container = named_item(&deployment, K8S_CONTAINER);
    let secret = read(SECRET);
    let secret_name = scalar(&nested(&lines(&secret), "metadata:"), "name");
    let reference = nested(&container, "secretKeyRef:");
    assert_eq!(scalar(&reference, "name"), secret_name);
    let key = scalar(&reference, "key");
    let data = nested(&lines(&secret), "stringData:");
    assert_eq!(scalars(&data, &key).len(), 1, "no {key} in {SECRET}");
    let configmap = read(CONFIGMAP);
    let volume = nested(&lines(&deployment), "configMap:");
    let configmap_name = scalar(&nested(&lines(&configmap), "metadata:"), "name");
    assert_eq!(scalar(&volume, "name"), configmap_name);
}

// ---------------------------------------------------------------------------
// Sentinel
// ---------------------------------------------------------------------------

/// `sentinel monitor NAME HOST PORT QUORUM` of the template.
fn template_monitor() -> (String, String, u16) {
    let template = read(SENTINEL_TEMPLATE);
    let line = template
        .lines()
        .find(|l| l.starts_with("sentinel monitor "))
        .expect("a sentinel monitor line");
    let words: Vec<&str> = line.split_whitespace().collect();
    let port = words[4].parse().expect("monitor port");
    (words[2].to_string(), words[3].to_string(), port)
}

#[test]
fn sentinel_template_agrees_with_the_sidecar_and_compose() {
    let (master, host, _) = template_monitor();
    let compose_config = compose_effective();
    assert_eq!(get(&compose_config, "upstream", "master_name"), master);
    assert_eq!(get(&k8s_effective(), "upstream", "master_name"), master);
    let compose = read(COMPOSE);
    let services = compose_services(&compose);
    assert!(
        services.contains_key(&host),
        "the template monitors {host}, not a service"
    );
    let template = read(SENTINEL_TEMPLATE);
    let port = template
        .lines()
        .find_map(|l| l.strip_prefix("port "))
        .expect("a port line");
    let sentinels = compose_config
        .get("upstream")
        .and_then(|u| u.get("sentinels"))
        .and_then(|s| s.as_array())
        .expect("upstream.sentinels");
    assert_eq!(sentinels.len(), 3, "three sentinels: {sentinels:?}");
    for s in sentinels {
        let (host, p) = s
            .as_str()
            .expect("sentinel")
            .rsplit_once(':')
            .expect("host:port");
        assert!(
            services.contains_key(host),
            "sentinel {host} is not a service"
        );
        assert_eq!(p, port, "sentinel {host}");
    }
    // Hostnames are only accepted in `sentinel monitor` when resolving is on before it.
    let position = |line: &str| template.lines().position(|l| l == line);
    let monitor = position(&format!("sentinel monitor {master} {host} 6379 2"));
    for setting in [
        "sentinel resolve-hostnames yes",
        "sentinel announce-hostnames yes",
    ] {
        assert!(
            position(setting) < monitor && position(setting).is_some(),
            "{setting}"
        );
    }
}

/// The `command:` of a compose service, with the password alias and every
/// service name replaced so it runs here (`names`: service -> stand-in).
fn compose_redis_args(service: &str, password: &str, names: &[(&str, &str)]) -> Vec<String> {
    let compose = read(COMPOSE);
    let command = list(&compose_service(&compose, service), "command")
        .unwrap_or_else(|| panic!("{service} has a command"));
    assert_eq!(command[0], "redis-server", "{service}");
    command[1..]
        .iter()
        .map(|a| match a.as_str() {
            a if a.starts_with('*') || a.contains("${") => password.to_string(),
            a => names
                .iter()
                .find(|(name, _)| *name == a)
                .map_or_else(|| a.to_string(), |(_, to)| to.to_string()),
        })
        .collect()
}

/// A process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs entrypoint.sh on a copy of the template that listens on `port` on
/// loopback, keeps its files in `dir` and monitors `primary` as "localhost".
fn start_sentinel(dir: &Path, port: u16, primary: u16, password: &str) -> Killed {
    let (master, host, monitor_port) = template_monitor();
    let template = read(SENTINEL_TEMPLATE)
        .replace("port 26379", &format!("port {port}\nbind 127.0.0.1 -::1"))
        .replace("dir /data", &format!("dir {}", dir.display()))
        .replace(
            &format!("{master} {host} {monitor_port}"),
            &format!("{master} localhost {primary}"),
        );
    std::fs::write(dir.join("template.conf"), template).expect("write template");
    // The redis image's entrypoint drops root; here it only runs the server.
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    std::fs::write(bin.join("docker-entrypoint.sh"), "#!/bin/sh\nexec \"$@\"\n").expect("stub");
    Command::new("chmod")
        .arg("755")
        .arg(bin.join("docker-entrypoint.sh"))
        .status()
        .expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = Command::new("sh")
        .arg(repo(SENTINEL_ENTRYPOINT))
        .env("PATH", path)
        .env("SENTINEL_TEMPLATE", dir.join("template.conf"))
        .env("SENTINEL_CONF", dir.join("sentinel.conf"))
        .env("SENTINEL_ANNOUNCE_HOSTNAME", "localhost")
        .env("REDIS_PASSWORD", password)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run entrypoint.sh");
    Killed(child)
}

/// One command to the sentinel, or None while it does not answer.
fn sentinel_cmd(port: u16, args: &[&str]) -> Option<Value> {
    let mut conn = RawConn::try_connect(([127, 0, 0, 1], port).into()).ok()?;
    conn.try_send(&common::encode_str(args)).ok()?;
    conn.try_read_reply().ok().map(|r| parse_one(&r))
}

/// The compose file's primary and replica, run here: their `redis-server`
/// arguments as written, service names replaced by "localhost".
fn start_compose_redis(password: &str) -> (RedisServer, RedisServer) {
    let (_, primary_host, _) = template_monitor();
    let names = [
        (primary_host.as_str(), "localhost"),
        ("redis-replica", "localhost"),
    ];
    let loopback = ["--bind", "127.0.0.1", "-::1"].map(String::from);
    let mut args = compose_redis_args("redis-primary", password, &names);
    args.extend(loopback.clone());
    // Start the replica's first sync now instead of after Redis's 5s delay.
    args.extend(["--repl-diskless-sync-delay", "0"].map(String::from));
    let primary = RedisServer::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut args = compose_redis_args("redis-replica", password, &names);
    let at = args
        .iter()
        .position(|a| a == "--replicaof")
        .expect("--replicaof");
    args[at + 2] = primary.port().to_string();
    args.extend(loopback);
    let replica = RedisServer::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for(
        "the replica's link to the primary",
        Duration::from_secs(10),
        || {
            let info = replica.cmd(&["INFO", "replication"]);
            String::from_utf8_lossy(&info)
                .contains("master_link_status:up")
                .then_some(())
        },
    );
    (primary, replica)
}

#[test]
fn compose_redis_and_sentinel_entrypoint_start_and_find_each_other() {
    let password = "packaging-test-password";
    let (primary, replica) = start_compose_redis(password);
    for (name, want) in [("maxmemory-policy", "noeviction"), ("appendonly", "yes")] {
        let reply = primary.cmd(&["CONFIG", "GET", name]);
        let want = format!(
            "*2\r\n${}\r\n{name}\r\n${}\r\n{want}\r\n",
            name.len(),
            want.len()
        );
        common::assert_reply(&reply, want.as_bytes());
    }
    let dir = tempfile::TempDir::new().expect("tempdir");
    let port = common::free_port();
    let _sentinel = start_sentinel(dir.path(), port, primary.port(), password);
    // The replica is only known from the primary's INFO, which needs auth-pass.
    let (master, _, _) = template_monitor();
    let replicas = wait_for(
        "the sentinel to list the replica",
        Duration::from_secs(15),
        || match sentinel_cmd(port, &["SENTINEL", "replicas", &master])? {
            Value::Array(items) if !items.is_empty() => Some(items),
            _ => None,
        },
    );
    let field = |name: &str| {
        let value = replicas[0].field(name).and_then(Value::bytes);
        value.map(|b| String::from_utf8_lossy(b).into_owned())
    };
    assert_eq!(field("ip").as_deref(), Some("localhost"));
    assert_eq!(field("port"), Some(replica.port().to_string()));
    let conf = std::fs::read_to_string(dir.path().join("sentinel.conf")).expect("sentinel.conf");
    let announce = conf
        .lines()
        .find(|l| l.starts_with("sentinel announce-ip "));
    assert!(announce.is_some_and(|l| l.contains("localhost")), "{conf}");
}

#[test]
fn sentinel_entrypoint_refuses_a_password_sentinel_cannot_write_back() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let out = Command::new("sh")
        .arg(repo(SENTINEL_ENTRYPOINT))
        .env("SENTINEL_TEMPLATE", repo(SENTINEL_TEMPLATE))
        .env("SENTINEL_CONF", dir.path().join("sentinel.conf"))
        .env("REDIS_PASSWORD", "two words")
        .output()
        .expect("run entrypoint.sh");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("REDIS_PASSWORD must not contain"));
    assert!(!dir.path().join("sentinel.conf").exists());
}

// ---------------------------------------------------------------------------
// The YAML structure, through PyYAML when it is installed
// ---------------------------------------------------------------------------

/// Prints every leaf of a one-document YAML file as `path<TAB>json`.
const FLATTEN: &str = r#"
import json, sys, yaml
def walk(path, v):
    if isinstance(v, dict):
        for k, x in v.items():
            walk(f"{path}.{k}" if path else str(k), x)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            walk(f"{path}[{i}]", x)
    else:
        print(f"{path}\t{json.dumps(v)}")
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]
if len(docs) != 1:
    sys.exit(f"{sys.argv[1]}: {len(docs)} documents, want 1")
walk("", docs[0])
"#;

/// Leaves of a YAML file: path -> JSON text of the value.
struct Yaml(BTreeMap<String, String>);

impl Yaml {
    fn load(path: &str) -> Yaml {
        let out = Command::new("python3")
            .args(["-c", FLATTEN])
            .arg(repo(path))
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf8");
        let leaves = text
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Yaml(leaves)
    }

    /// The JSON text at `path` (a string is quoted).
    fn at(&self, path: &str) -> &str {
        self.0
            .get(path)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {path}"))
    }

    /// The index of the item of list `path` whose `name` is `name`.
    fn item(&self, path: &str, name: &str) -> String {
        let want = format!("\"{name}\"");
        (0..)
            .map(|i| format!("{path}[{i}]"))
            .take_while(|p| self.0.contains_key(&format!("{p}.name")))
            .find(|p| self.at(&format!("{p}.name")) == want)
            .unwrap_or_else(|| panic!("no {name} in {path}"))
    }

    fn paths_ending(&self, suffix: &str) -> impl Iterator<Item = (&String, &String)> {
        let suffix = suffix.to_string();
        self.0.iter().filter(move |(k, _)| k.ends_with(&suffix))
    }

    /// Asserts the JSON text at `path`.
    #[track_caller]
    fn expect(&self, path: &str, want: &str) {
        assert_eq!(self.at(path), want, "{path}");
    }
}

/// Loads `path` through PyYAML, or None (with a note) when it is missing.
fn load_yaml(path: &str) -> Option<Yaml> {
    let found = Command::new("python3")
        .args(["-c", "import yaml"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        println!("note: python3 with PyYAML not found; YAML structure of {path} not checked");
        return None;
    }
    Some(Yaml::load(path))
}

#[test]
fn compose_yaml_publishes_on_loopback_and_waits_for_health() {
    let Some(compose) = load_yaml(COMPOSE) else {
        return;
    };
    for (path, value) in compose.0.iter().filter(|(k, _)| k.contains(".ports[")) {
        assert!(
            value.starts_with("\"127.0.0.1:"),
            "{path} = {value}: not loopback only"
        );
    }
    for service in compose_services(&read(COMPOSE)).keys() {
        let prefix = format!("services.{service}.");
        let test = format!("{prefix}healthcheck.test[0]");
        assert!(
            compose.0.contains_key(&test),
            "{service} has no healthcheck"
        );
        let conditions = compose.paths_ending(".condition");
        for (path, value) in conditions.filter(|(k, _)| k.starts_with(&prefix)) {
            assert_eq!(value, "\"service_healthy\"", "{path}");
        }
    }
    // The merged sentinel services keep their own hostnames.
    compose.expect("services.sentinel-3.hostname", "\"sentinel-3\"");
}

#[test]
fn pod_yaml_puts_the_sidecar_probes_and_annotations_where_they_act() {
    let Some(pod) = load_yaml(DEPLOYMENT) else {
        return;
    };
    let spec = "spec.template.spec";
    let sidecar = pod.item(&format!("{spec}.initContainers"), K8S_CONTAINER);
    let at = |rel: &str| format!("{sidecar}.{rel}");
    pod.expect(&at("restartPolicy"), "\"Always\"");
    pod.expect(&at("startupProbe.httpGet.path"), "\"/livez\"");
    pod.expect(&at("livenessProbe.httpGet.path"), "\"/livez\"");
    pod.expect(&at("readinessProbe.httpGet.path"), "\"/readyz\"");
    pod.expect(&at("securityContext.runAsNonRoot"), "true");
    pod.expect(&at("securityContext.readOnlyRootFilesystem"), "true");
    pod.expect(&at("securityContext.capabilities.drop[0]"), "\"ALL\"");
    pod.at(&at("resources.limits.memory"));
    // Annotations are strings, on the pod template (not the Deployment).
    let annotations = "spec.template.metadata.annotations";
    let admin = port_of(get(&k8s_effective(), "admin", "listen"));
    pod.expect(&format!("{annotations}.prometheus.io/scrape"), "\"true\"");
    pod.expect(
        &format!("{annotations}.prometheus.io/port"),
        &format!("\"{admin}\""),
    );
    pod.expect(&format!("{annotations}.prometheus.io/path"), "\"/metrics\"");
    let volume = pod.item(&format!("{spec}.volumes"), "resp-sidecar-config");
    let configmap = load_yaml(CONFIGMAP).expect("PyYAML");
    pod.expect(
        &format!("{volume}.configMap.name"),
        configmap.at("metadata.name"),
    );
    let secret = load_yaml(SECRET).expect("PyYAML");
    secret.expect("kind", "\"Secret\"");
    assert!(secret
        .at("stringData.REDIS_PASSWORD")
        .contains("placeholder"));
}
