package logic

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/goimdev/goim/protocol"
)

// processRoutes are served by the server process around logic's handler
// (internal/standalone), marked x-goim-served-by: server in the spec.
var processRoutes = []string{"GET /healthz", "GET /readyz", "GET /metrics"}

var httpMethods = []string{"get", "put", "post", "delete", "patch", "head", "options"}

func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	return doc
}

// TestOpenAPIMatchesRoutes checks that docs/openapi.yaml documents every
// route of the logic mux and nothing else (but the process endpoints).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.") {
		t.Fatalf("openapi version %q", v)
	}
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		t.Fatal("no paths")
	}
	documented := make(map[string]map[string]any)
	for p, item := range paths {
		ops, ok := item.(map[string]any)
		if !ok {
			t.Fatalf("path %s is not an object", p)
		}
		for m, op := range ops {
			if !slices.Contains(httpMethods, m) {
				continue
			}
			documented[strings.ToUpper(m)+" "+p], _ = op.(map[string]any)
		}
	}
	e := newEnv(t)
	var registered []string
	for _, rt := range e.svc.routeTable() {
		registered = append(registered, rt.pattern)
		if _, ok := documented[rt.pattern]; !ok {
			t.Errorf("route %s is not in docs/openapi.yaml", rt.pattern)
		}
	}
	for key, op := range documented {
		if slices.Contains(registered, key) {
			if op["x-goim-served-by"] != nil {
				t.Errorf("%s is a logic route but marked x-goim-served-by", key)
			}
			continue
		}
		if !slices.Contains(processRoutes, key) || op["x-goim-served-by"] != "server" {
			t.Errorf("docs/openapi.yaml documents %s, which logic does not serve", key)
		}
	}
	for _, key := range processRoutes {
		if _, ok := documented[key]; !ok {
			t.Errorf("process endpoint %s is not documented", key)
		}
	}
}

// TestOpenAPIWellFormed checks each operation: a unique operationId, a
// success and (for authenticated routes) a 401 answer, error answers of
// the Error schema, declared path parameters, and resolvable $refs.
func TestOpenAPIWellFormed(t *testing.T) {
	doc := loadOpenAPI(t)
	ids := make(map[string]string)
	globalSecurity := doc["security"]
	for p, item := range doc["paths"].(map[string]any) {
		for m, v := range item.(map[string]any) {
			if !slices.Contains(httpMethods, m) {
				continue
			}
			op := v.(map[string]any)
			key := strings.ToUpper(m) + " " + p
			id, _ := op["operationId"].(string)
			if id == "" {
				t.Errorf("%s: no operationId", key)
			} else if prev, dup := ids[id]; dup {
				t.Errorf("operationId %s used by %s and %s", id, prev, key)
			}
			ids[id] = key
			resp, _ := op["responses"].(map[string]any)
			var success, has401 bool
			for code := range resp {
				success = success || strings.HasPrefix(code, "2")
				has401 = has401 || code == "401"
			}
			if !success {
				t.Errorf("%s: no 2xx response", key)
			}
			sec, explicit := op["security"]
			if !explicit {
				sec = globalSecurity
			}
			if s, _ := sec.([]any); len(s) > 0 && !has401 {
				t.Errorf("%s: authenticated but no 401 response", key)
			}
			// Path parameters: each {name} is declared.
			params := paramNames(t, doc, op)
			for _, seg := range strings.Split(p, "/") {
				if strings.HasPrefix(seg, "{") {
					if name := strings.Trim(seg, "{}"); !slices.Contains(params, name) {
						t.Errorf("%s: path parameter %s not declared", key, name)
					}
				}
			}
			if strings.HasPrefix(p, "/api/") && strings.Contains(p, "{") {
				if _, ok := resp["400"]; !ok {
					t.Errorf("%s: takes ids in the path but documents no 400", key)
				}
			}
		}
	}
	// Every $ref resolves.
	walkRefs(doc, func(ref string) {
		if resolve(doc, ref) == nil {
			t.Errorf("unresolved $ref %s", ref)
		}
	})
	// The Error code enum lists every code the API answers.
	enum := resolve(doc, "#/components/schemas/Error").(map[string]any)["properties"].(map[string]any)["code"].(map[string]any)["enum"].([]any)
	var codes []string
	for _, c := range enum {
		codes = append(codes, fmt.Sprint(c))
	}
	for _, c := range []string{protocol.CodeBadRequest, protocol.CodeUnauthorized, protocol.CodeBadCredentials, protocol.CodeForbidden,
		protocol.CodeBlocked, protocol.CodeNotMember, protocol.CodeNotFound, protocol.CodeConflict, protocol.CodeUsernameTaken,
		protocol.CodeTooLarge, protocol.CodeRateLimited, protocol.CodeInternal, protocol.CodeUnavailable, codeMethodNotAllowed,
		codeAlreadyFriends, codeGroupFull, codeGroupDismissed, codeOwnerMustTransfer} {
		if !slices.Contains(codes, c) {
			t.Errorf("Error.code enum lacks %s", c)
		}
	}
	for _, r := range permissionRules {
		if !r.Allow && !slices.Contains(codes, r.Code) {
			t.Errorf("refusal code %s of %s is not in the Error.code enum", r.Code, r.Action)
		}
	}
}

func paramNames(t *testing.T, doc map[string]any, op map[string]any) []string {
	var names []string
	ps, _ := op["parameters"].([]any)
	for _, p := range ps {
		pm, _ := p.(map[string]any)
		if ref, ok := pm["$ref"].(string); ok {
			pm, _ = resolve(doc, ref).(map[string]any)
		}
		if pm == nil {
			t.Errorf("unresolvable parameter %v", p)
			continue
		}
		if pm["in"] == "path" {
			names = append(names, fmt.Sprint(pm["name"]))
		}
	}
	return names
}

func walkRefs(v any, fn func(string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && k == "$ref" {
				fn(s)
			}
			walkRefs(c, fn)
		}
	case []any:
		for _, c := range x {
			walkRefs(c, fn)
		}
	}
}

// resolve follows a local JSON pointer ("#/components/...").
func resolve(doc map[string]any, ref string) any {
	if !strings.HasPrefix(ref, "#/") {
		return nil
	}
	var cur any = doc
	for _, part := range strings.Split(ref[2:], "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[part]; !ok {
			return nil
		}
	}
	return cur
}
