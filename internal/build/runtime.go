package build

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/atomicfile"
)

// Runtime is a language berth builds images for.
type Runtime string

const (
	RuntimeGo     Runtime = "go"
	RuntimePython Runtime = "python"
	RuntimeNode   Runtime = "node"
	// RuntimeGoWasm builds a Go main package with GOOS=wasip1 GOARCH=wasm
	// into a Wasm module, packed as an OCI artifact (docs/wasm.md). It is
	// never detected: a Go source is a container unless asked.
	RuntimeGoWasm Runtime = "go-wasm"
	// RuntimeGoLambda is a Go Lambda handler (github.com/aws/aws-lambda-go),
	// run behind the Lambda Runtime API bridge (golambda.go).
	RuntimeGoLambda Runtime = "go-lambda"
	// RuntimeNodeLambda is a Node.js Lambda handler (exports.handler), run
	// by Berth's runtime loop behind the same bridge (nodelambda.go).
	RuntimeNodeLambda Runtime = "node-lambda"
)

// Runtimes are the supported runtimes, in detection order.
var Runtimes = []Runtime{RuntimeGo, RuntimeNode, RuntimePython, RuntimeGoLambda, RuntimeNodeLambda}

// ParseRuntime accepts a runtime's name and a few common spellings.
func ParseRuntime(s string) (Runtime, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "go", "golang":
		return RuntimeGo, nil
	case "go-lambda", "golambda", "lambda-go":
		return RuntimeGoLambda, nil
	case "node-lambda", "nodelambda", "lambda-node", "nodejs-lambda":
		return RuntimeNodeLambda, nil
	case "python", "python3", "py":
		return RuntimePython, nil
	case "node", "nodejs", "node.js", "js", "javascript":
		return RuntimeNode, nil
	case "go-wasm", "wasm", "go-wasip1":
		return RuntimeGoWasm, nil
	}
	return "", v1.FieldError("runtime", "unsupported runtime %q; supported: %s, %s", s, supportedList(), RuntimeGoWasm)
}

func supportedList() string {
	names := make([]string, len(Runtimes))
	for i, r := range Runtimes {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

// Detect says which runtime the source in dir is for: a go.mod that
// requires aws-lambda-go is go-lambda; go.mod or main.go is Go; a main
// module (package.json's "main", else index.js or index.mjs) that exports
// a handler and listens on nothing is node-lambda; package.json is Node;
// requirements.txt, main.py or app.py is Python. Go wins over Node over Python when several are there (a Go
// service with a package.json for its web assets is still Go).
func Detect(dir string) (Runtime, error) {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return "", v1.FieldError("path", "%s is not a directory", dir)
	}
	has := func(n string) bool {
		_, err := os.Stat(filepath.Join(dir, n))
		return err == nil
	}
	switch {
	case has("go.mod") && requiresLambda(filepath.Join(dir, "go.mod")):
		return RuntimeGoLambda, nil
	case has("go.mod"), has("main.go"):
		return RuntimeGo, nil
	case nodeLambdaSource(dir):
		return RuntimeNodeLambda, nil
	case has("package.json"):
		return RuntimeNode, nil
	case has("requirements.txt"), has("main.py"), has("app.py"):
		return RuntimePython, nil
	}
	return "", v1.FieldError("path", "cannot tell the runtime of %s: no go.mod or main.go (go), package.json (node), or requirements.txt, main.py or app.py (python); pass --runtime (supported: %s)", dir, supportedList())
}

// Options say what to build.
type Options struct {
	// Dir holds the source.
	Dir string
	// Ref names the image, e.g. "hello:v1".
	Ref string
	// Runtime; empty means Detect.
	Runtime Runtime
	// Env is baked into the image config, KEY=VALUE.
	Env []string
	// Port is the default PORT (8080).
	Port string
	// Bases gives the Python and Node base layers; nil means the Debian
	// bases cached under the default cache dir.
	Bases BaseSource
	// Progress receives progress lines and the tools' output (go build,
	// pip, npm, debootstrap); nil discards them.
	Progress io.Writer
}

// Result is what a build made.
type Result struct {
	Runtime Runtime
	Digest  string // the image manifest's digest
	// Wasm is set for a Wasm module: the output is an OCI image layout tar
	// of the artifact, for the registry only (no node runs it).
	Wasm bool
}

// Build builds the image and writes it to out as a docker-save tarball
// (for go-wasm: an OCI image layout tarball of the Wasm artifact).
func Build(ctx context.Context, opts Options, out io.Writer) (Result, error) {
	tag, err := name.NewTag(opts.Ref)
	if err != nil {
		return Result{}, v1.FieldError("tag", "%q is not an image name: %v", opts.Ref, err)
	}
	if opts.Runtime == "" {
		if opts.Runtime, err = Detect(opts.Dir); err != nil {
			return Result{}, err
		}
	} else if opts.Runtime, err = ParseRuntime(string(opts.Runtime)); err != nil {
		return Result{}, err
	}
	if st, err := os.Stat(opts.Dir); err != nil || !st.IsDir() {
		return Result{}, v1.FieldError("path", "%s is not a directory", opts.Dir)
	}
	if opts.Runtime == RuntimeGoWasm {
		mod, err := compileGoFor(ctx, opts.Dir, opts.Progress, "wasip1", "wasm")
		if err != nil {
			return Result{}, err
		}
		d, err := WriteWasmArtifact(tag.String(), mod, out)
		return Result{Runtime: opts.Runtime, Digest: d, Wasm: true}, err
	}
	var img ggcr.Image
	switch opts.Runtime {
	case RuntimeGo:
		img, err = goImage(ctx, GoOptions{Dir: opts.Dir, Ref: opts.Ref, Env: opts.Env, Port: opts.Port, Output: opts.Progress})
	case RuntimeGoLambda:
		img, err = goLambdaImage(ctx, opts)
	case RuntimePython, RuntimeNode, RuntimeNodeLambda:
		img, err = interpreted(ctx, opts)
	}
	if err != nil {
		return Result{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return Result{}, err
	}
	if err := tarball.Write(tag, img, out); err != nil {
		return Result{}, err
	}
	return Result{Runtime: opts.Runtime, Digest: d.String()}, nil
}

// BuildToFile is Build writing to path, replaced whole (see atomicfile).
func BuildToFile(ctx context.Context, opts Options, path string) (Result, error) {
	var res Result
	err := atomicfile.Write(path, imageFileMode, func(w io.Writer) error {
		var err error
		res, err = Build(ctx, opts, w)
		return err
	})
	return res, err
}

// imageFileMode is an image tar's: a build output, as readable as the
// source it came from.
const imageFileMode = 0o644

// imageConfig is what differs between runtimes in the image config.
type imageConfig struct {
	entrypoint []string
	env        []string
	workdir    string
}

// assemble stacks layers on an empty image and writes a config with no
// timestamps, so digests depend on the layers and settings only.
func assemble(layers []ggcr.Layer, port string, ic imageConfig, extraEnv []string) (ggcr.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	if port == "" {
		port = "8080"
	}
	cf.OS = "linux"
	cf.Architecture = goruntime.GOARCH
	cf.Created = ggcr.Time{Time: epoch}
	for i := range cf.History {
		cf.History[i].Created = ggcr.Time{Time: epoch}
	}
	cf.Config.Entrypoint = ic.entrypoint
	cf.Config.Env = append(append(ic.env, "PORT="+port), extraEnv...)
	cf.Config.WorkingDir = ic.workdir
	cf.Config.ExposedPorts = map[string]struct{}{port + "/tcp": {}}
	return mutate.ConfigFile(img, cf)
}

// requirements reports whether requirements.txt names anything to install.
func requirements(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "requirements.txt"))
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			return true
		}
	}
	return false
}

// packageJSON is the part of package.json a build reads.
type packageJSON struct {
	Main         string            `json:"main"`
	Dependencies map[string]string `json:"dependencies"`
}

func readPackageJSON(dir string) (packageJSON, error) {
	var p packageJSON
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		if os.IsNotExist(err) {
			return p, nil
		}
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, &v1.Error{Kind: v1.ErrInvalid, File: filepath.Join(dir, "package.json"), Message: "not valid JSON: " + err.Error()}
	}
	return p, nil
}

// requiresLambda says whether a go.mod requires aws-lambda-go: a module
// written as a Lambda handler.
func requiresLambda(gomod string) bool {
	b, err := os.ReadFile(gomod)
	return err == nil && bytes.Contains(b, []byte("github.com/aws/aws-lambda-go "))
}
