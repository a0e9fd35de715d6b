// The reference for sgr's Go-template dialect: Go's text/template with sprig
// (Debian's golang-github-masterminds-sprig-dev) and duat's additions
// (toYaml with gopkg.in/yaml.v2, RaiseError). Built in GOPATH mode by
// scripts/test.sh and bench/stencil.sh; the differential tests render every
// template of tests/stencil/ with both and compare the bytes.
//
// Usage: stencil-reference TEMPLATE CONTEXT.json
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v2"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: stencil-reference TEMPLATE CONTEXT.json")
		os.Exit(2)
	}
	source, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	contextText, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var data map[string]interface{}
	if err := json.Unmarshal(contextText, &data); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Env is the process environment, as duat built it (sgr prints it masked).
	environment := map[string]interface{}{}
	for _, entry := range os.Environ() {
		if name, value, found := strings.Cut(entry, "="); found {
			environment[name] = value
		}
	}
	data["Env"] = environment
	var raised []string
	functions := sprig.TxtFuncMap()
	functions["toYaml"] = func(value interface{}) string {
		out, err := yaml.Marshal(value)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(out), "\n")
	}
	functions["RaiseError"] = func(message string) string {
		raised = append(raised, message)
		return ""
	}
	parsed, err := template.New("noname").Funcs(functions).Parse(string(source))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var output strings.Builder
	if err := parsed.Execute(&output, data); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if len(raised) > 0 {
		fmt.Fprintln(os.Stderr, errors.New(raised[0]))
		os.Exit(1)
	}
	os.Stdout.WriteString(output.String())
}
