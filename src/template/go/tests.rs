use super::*;

struct FixedHost;

impl Host for FixedHost {
    fn env(&self, name: &str) -> Option<String> {
        match name {
            "USER" => Some("kmutch".to_owned()),
            "GITHUB_TOKEN" => Some("ghp_example".to_owned()),
            _ => None,
        }
    }
    fn now(&self) -> String {
        "2019-01-25 19:10:44 +0000 UTC".to_owned()
    }
    fn uuid(&self) -> Result<String, String> {
        Ok("00000000-0000-4000-8000-000000000000".to_owned())
    }
}

fn data() -> Value {
    Value::from(&serde_json::json!({
        "duat": {"version": "0.9.9", "module": "studio-go-runner", "gitBranch": "feature/197_hybrid"},
        "Namespace": "ci",
        "n": 1_000_000,
        "list": ["a", "b"],
        "map": {"b": 2, "a": 1.5},
    }))
}

fn render(source: &str) -> Result<String, TemplateError> {
    Template::parse(source)?.render(&data(), &FixedHost)
}

fn ok(source: &str) -> String {
    render(source).unwrap_or_else(|error| panic!("{source}: {error}"))
}

#[test]
fn studio_go_runner_constructs() {
    assert_eq!(
        ok("{{.duat.version}} {{.duat.module}}"),
        "0.9.9 studio-go-runner"
    );
    assert_eq!(
        ok(r#"{{.duat.gitBranch | replace "_" "-" | replace "/" "-" }}"#),
        "feature-197-hybrid"
    );
    assert_eq!(ok(r#"build-{{ expandenv "$USER" }}"#), "build-kmutch");
    assert_eq!(
        ok(r#"'{{ expandenv "$GITHUB_TOKEN" | b64enc }}'"#),
        "'Z2hwX2V4YW1wbGU='"
    );
    assert_eq!(
        ok(r#"{{ env "RUNNER_BUILD_LOG" | default "build.log" }}"#),
        "build.log"
    );
    assert_eq!(
        ok(r#"{{ expandenv "$NVIDIA_VISIBLE_DEVICES" | empty | ternary "0" "2" }}"#),
        "0"
    );
    assert_eq!(
        ok(r#"{{ default "ci-go-runner" .Namespace }} {{ default "x" .Missing }}"#),
        "ci x"
    );
    assert_eq!(
        ok("${RABBITMQ_SERVICE_SERVICE_HOST} $1 {{.duat.version}}"),
        "${RABBITMQ_SERVICE_SERVICE_HOST} $1 0.9.9"
    );
}

#[test]
fn missing_keys_and_printing() {
    assert_eq!(
        ok("{{.missing}}|{{.missing.deeper}}|{{.duat.awsecr}}"),
        "<no value>|<no value>|<no value>"
    );
    assert_eq!(
        ok("{{.n}} {{.list}} {{.map}}"),
        "1e+06 [a b] map[a:1.5 b:2]"
    );
    assert_eq!(
        ok("{{ toJson .map }} {{ toJson \"<&>\" }}"),
        r#"{"a":1.5,"b":2} "\u003c\u0026\u003e""#
    );
}

#[test]
fn control_flow_variables_and_trim() {
    assert_eq!(ok("{{ if .Namespace }}yes{{ else }}no{{ end }}"), "yes");
    assert_eq!(
        ok("{{ if .nope }}a{{ else if .Namespace }}b{{ else }}c{{ end }}"),
        "b"
    );
    assert_eq!(
        ok("{{ range $i, $v := .list }}{{ $i }}={{ $v }};{{ end }}"),
        "0=a;1=b;"
    );
    assert_eq!(ok("{{ range .nothing }}x{{ else }}empty{{ end }}"), "empty");
    assert_eq!(ok("{{ range $k, $v := .map }}{{ $k }}{{ end }}"), "ab");
    assert_eq!(ok("{{ with .duat }}{{ .version }}{{ end }}"), "0.9.9");
    assert_eq!(ok("{{ $x := \"a\" }}{{ $x = \"b\" }}{{ $x }}"), "b");
    assert_eq!(ok("a  \n {{- \"b\" -}} \n  c"), "abc");
    assert_eq!(ok("a {{- /* comment */ -}} b{{/* x */}}"), "ab");
    assert_eq!(
        ok("{{ index .map \"a\" }} {{ index .list 1 }} {{ len .list }}"),
        "1.5 b 2"
    );
    assert_eq!(
        ok("{{ range .list }}{{ if eq . \"b\" }}{{ break }}{{ end }}{{ . }}{{ end }}"),
        "a"
    );
    assert_eq!(
        ok("{{ and 1 0 }} {{ or 0 \"x\" }} {{ not true }}"),
        "0 x false"
    );
    assert_eq!(
        ok("{{ quote \"a\" .missing 3 }} {{ squote \"b\" }} {{ upper \"x\" }}"),
        "\"a\" \"3\" 'b' X"
    );
    assert_eq!(ok("{{ printf \"%s-%d-%v\" \"a\" 3 .n }}"), "a-3-1e+06");
    assert_eq!(ok("{{ \"x\" | printf \"%s!\" }}"), "x!");
}

#[test]
fn errors_have_positions() {
    let cases = [
        ("line\n  {{ .x ", "2:3"),
        ("{{ nosuch 1 }}", "1:4"),
        ("{{ .missing | replace \"a\" \"b\" }}", "1:15"),
        ("{{ if .x }}", "1:7"),
        ("{{ $undefined }}", "1:4"),
        ("{{ end }}", "1:4"),
        ("a{{ RaiseError \"stop here\" }}b", "1:5"),
        ("{{ .duat.version.x }}", "1:4"),
    ];
    for (source, position) in cases {
        let error = render(source)
            .err()
            .unwrap_or_else(|| panic!("{source} should fail"));
        assert_eq!(error.position().to_string(), position, "{source}: {error}");
    }
}

#[test]
fn strict_mode_names_the_missing_key() {
    let template = Template::parse("{{ .duat.version }} {{ .duat.awsecr }}")
        .unwrap_or_else(|error| panic!("{error}"));
    let error = template
        .render_with(&data(), &FixedHost, true)
        .err()
        .map(|error| error.to_string());
    assert_eq!(
        error.as_deref(),
        Some("1:24: undefined variable: .duat has no entry for key \"awsecr\"")
    );
    assert_eq!(
        template.render(&data(), &FixedHost).ok().as_deref(),
        Some("0.9.9 <no value>")
    );
}

#[test]
fn hostile_nesting_is_an_error_not_a_crash() {
    let deep_parens = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
    assert!(
        Template::parse(&deep_parens)
            .is_err_and(|error| error.to_string().contains("nesting deeper than"))
    );
    let deep_ifs = format!("{}x{}", "{{ if 1 }}".repeat(5000), "{{ end }}".repeat(5000));
    assert!(Template::parse(&deep_ifs).is_err());
    assert_eq!(
        ok(&format!(
            "{}x{}",
            "{{ if 1 }}".repeat(50),
            "{{ end }}".repeat(50)
        )),
        "x"
    );
    assert!(
        render("{{ range 3 }}x{{ end }}").is_err(),
        "Go 1.19 cannot range over an int"
    );
}

/// A host whose random source is gone.
struct NoRandomHost;

impl Host for NoRandomHost {
    fn env(&self, _: &str) -> Option<String> {
        None
    }
    fn now(&self) -> String {
        String::new()
    }
    fn uuid(&self) -> Result<String, String> {
        Err("the random source /dev/urandom could not be read for a UUID".to_owned())
    }
}

#[test]
fn a_failed_uuid_fails_the_render() {
    let rendered = Template::parse("id: {{ uuidv4 }}")
        .and_then(|template| template.render(&data(), &NoRandomHost));
    match rendered {
        Err(TemplateError::Execute { position, message }) => {
            assert_eq!(position.to_string(), "1:8");
            assert_eq!(
                message,
                "error calling uuidv4: the random source /dev/urandom could not be read for a UUID"
            );
        }
        other => panic!("expected an execution error, got {other:?}"),
    }
}
