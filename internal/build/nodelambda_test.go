package build

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A Node handler written for AWS Lambda builds as it is: the image runs
// the bridge, which runs node on Berth's runtime loop, which loads the
// handler from /app (lambdabridge's tests run the three).
func TestNodeLambdaImage(t *testing.T) {
	dir := filepath.Join("testdata", "nodelambda")
	if rt, err := Detect(dir); err != nil || rt != RuntimeNodeLambda {
		t.Fatalf("Detect = %s, %v; want node-lambda", rt, err)
	}
	res, tarBytes := build(t, dir, "")
	if res.Runtime != RuntimeNodeLambda {
		t.Fatalf("built as %s", res.Runtime)
	}
	img, cf := builtImage(t, tarBytes)
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/berth-lambda /usr/bin/node /berth/lambda-runtime.js" {
		t.Errorf("entrypoint %q", got)
	}
	if !slices.Contains(cf.Config.Env, "_HANDLER=index.handler") || !slices.Contains(cf.Config.Env, "LAMBDA_TASK_ROOT=/app") || cf.Config.WorkingDir != "/app" {
		t.Errorf("config env %v, workdir %s", cf.Config.Env, cf.Config.WorkingDir)
	}
	files := map[string][]byte{}
	for _, e := range layerEntries(t, img, -1) {
		files[e.hdr.Name] = e.data
	}
	if !bytes.HasPrefix(files["berth-lambda"], []byte("\x7fELF")) || !bytes.Equal(files["berth/lambda-runtime.js"], nodeLambdaRuntime) || files["app/index.js"] == nil {
		t.Errorf("layer holds %v", slices.Sorted(func(yield func(string) bool) {
			for n := range files {
				if !yield(n) {
					return
				}
			}
		}))
	}
	if res2, _ := build(t, dir, RuntimeNodeLambda); res2.Digest != res.Digest {
		t.Errorf("digests %s and %s", res.Digest, res2.Digest)
	}
}

func TestNodeLambdaHandlerName(t *testing.T) {
	dir := writeTree(t, map[string]string{"package.json": `{"main": "src/app.mjs"}`, "src/app.mjs": "export const handler = async () => 1;\n"})
	if rt, err := Detect(dir); err != nil || rt != RuntimeNodeLambda {
		t.Fatalf("Detect = %s, %v", rt, err)
	}
	ic, _, err := plan(RuntimeNodeLambda, dir)
	if err != nil || !slices.Contains(ic.env, "_HANDLER=src/app.handler") {
		t.Fatalf("plan = %v, %v", ic.env, err)
	}
	// No package.json: a Lambda zip's index.mjs.
	dir = writeTree(t, map[string]string{"index.mjs": "export async function handler(event) { return event }\n"})
	if rt, err := Detect(dir); err != nil || rt != RuntimeNodeLambda {
		t.Fatalf("Detect index.mjs = %s, %v", rt, err)
	}
	dir = writeTree(t, map[string]string{"package.json": `{}`})
	if _, _, err := plan(RuntimeNodeLambda, dir); err == nil || !strings.Contains(err.Error(), "index.js") {
		t.Errorf("no handler module: %v", err)
	}
}
