package build

import (
	"context"
	_ "embed"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	v1 "berth.dev/berth/api/v1"
)

// nodeLambdaRuntime is the runtime loop of node-lambda images: it loads
// the handler and speaks the Lambda Runtime API to the bridge, as AWS's
// own Node runtime does, so exports.handler runs unchanged.
//
//go:embed nodelambda/runtime.js
var nodeLambdaRuntime []byte

// nodeLambdaRuntimePath is where the loop sits in the image, outside /app
// so it never shadows a file of the user's.
const nodeLambdaRuntimePath = "/berth/lambda-runtime.js"

// baseOf is the runtime whose base image rt's images start from.
func baseOf(rt Runtime) Runtime {
	if rt == RuntimeNodeLambda {
		return RuntimeNode
	}
	return rt
}

// nodeLambdaPlan runs the bridge, which runs node on the runtime loop,
// which loads _HANDLER: FILE.handler for package.json's "main" (index.js
// without one), as a Lambda function's handler setting; a template's env
// can name another.
func nodeLambdaPlan(dir string) (imageConfig, bool, error) {
	pkg, err := readPackageJSON(dir)
	if err != nil {
		return imageConfig{}, false, err
	}
	main, ok := nodeLambdaMain(dir, pkg)
	if !ok {
		return imageConfig{}, false, v1.FieldError("path", "no %s in %s: a node-lambda handler is package.json's \"main\", else index.js, index.mjs or index.cjs, exporting handler", strings.TrimPrefix(main, "/"), dir)
	}
	module := strings.TrimSuffix(strings.TrimPrefix(main, "/"), path.Ext(main))
	return imageConfig{
		entrypoint: []string{lambdaBridgePath, "/usr/bin/node", nodeLambdaRuntimePath},
		env:        []string{"NODE_ENV=production", "LAMBDA_TASK_ROOT=/app", "_HANDLER=" + module + ".handler"},
		workdir:    "/app",
	}, len(pkg.Dependencies) > 0, nil
}

// nodeLambdaMain is the handler's module, slash-rooted, and whether it
// exists.
func nodeLambdaMain(dir string, pkg packageJSON) (string, bool) {
	if pkg.Main != "" {
		main := path.Clean("/" + filepath.ToSlash(pkg.Main))
		_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(main)))
		return main, err == nil
	}
	for _, n := range []string{"index.js", "index.mjs", "index.cjs"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return "/" + n, true
		}
	}
	return "/index.js", false
}

var (
	exportsHandler = regexp.MustCompile(`(?m)(\bexports\.handler\s*=|\bmodule\.exports\s*=\s*\{[^}]*\bhandler\b|^\s*export\s+(const|let|var|async\s+function|function)\s+handler\b|^\s*export\s*\{[^}]*\bhandler\b)`)
	listens        = regexp.MustCompile(`\.listen\s*\(`)
)

// nodeLambdaSource says whether dir is a Node Lambda handler: its main
// module exports handler and starts no server of its own.
func nodeLambdaSource(dir string) bool {
	pkg, err := readPackageJSON(dir)
	if err != nil {
		return false
	}
	main, ok := nodeLambdaMain(dir, pkg)
	if !ok {
		return false
	}
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(main)))
	return err == nil && exportsHandler.Match(b) && !listens.Match(b)
}

// addNodeLambdaRuntime puts the bridge and the runtime loop in the layer.
func addNodeLambdaRuntime(ctx context.Context, p *packer) error {
	bridge, err := compileBridge(ctx)
	if err != nil {
		return err
	}
	if err := p.bytes(lambdaBridgePath[1:], 0o755, bridge); err != nil {
		return err
	}
	if err := p.dir(path.Dir(nodeLambdaRuntimePath)[1:], 0o755); err != nil {
		return err
	}
	return p.bytes(nodeLambdaRuntimePath[1:], 0o644, nodeLambdaRuntime)
}
