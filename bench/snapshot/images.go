package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"berth.dev/berth/internal/build"
)

// pythonImports and nodeImports are bench/coldstart's (runtimes.go), so
// the two programs' "imports" functions are the same handler: what one
// that parses, stores, signs and talks to the web loads at init, from the
// standard library (PyPI is not reachable here) and Node's built-ins.
const (
	pythonImports = "import asyncio, decimal, sqlite3, uuid, hashlib, hmac, logging, datetime, urllib.request, http.client, ssl, email.mime.multipart, xml.etree.ElementTree, csv, zipfile, base64\n"
	nodeImports   = "const crypto = require('crypto'), zlib = require('zlib'), http2 = require('http2'), https = require('https'), url = require('url'), util = require('util'), stream = require('stream'), events = require('events'), querystring = require('querystring'), dns = require('dns');\n"
)

type fnImage struct {
	name, ref, tar string
}

// buildImages writes each function with `berth init` and builds it with
// Berth's builder, as bench/coldstart -runtimes does, into image tars.
func buildImages(ctx context.Context, dir string, names []string) ([]fnImage, error) {
	bin := filepath.Join(dir, "berth")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/berth").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/berth: %v %s", err, out)
	}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, err
	}
	var fns []fnImage
	for _, name := range names {
		rt, variant, ok := cut(name)
		if !ok {
			return nil, fmt.Errorf("function %q: want RUNTIME-hello or RUNTIME-imports", name)
		}
		cmd := exec.Command(bin, "init", "--runtime", rt, name)
		cmd.Dir = src
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("berth init %s: %v %s", name, err, out)
		}
		if variant == "imports" {
			main, extra := "main.py", pythonImports
			switch rt {
			case "node":
				main, extra = "index.js", nodeImports
			case "go":
				return nil, fmt.Errorf("%s: a Go program's imports are linked in, there is no init to measure", name)
			}
			p := filepath.Join(src, name, main)
			raw, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(p, []byte(extra+string(raw)), 0o644); err != nil {
				return nil, err
			}
		}
		tar := filepath.Join(dir, name+".tar")
		ref := "berth.bench/" + name + ":snap"
		fmt.Fprintf(os.Stderr, "building %s (the Debian bases are built once per machine and cached)\n", ref)
		if _, err := build.BuildToFile(ctx, build.Options{Dir: filepath.Join(src, name), Ref: ref, Runtime: build.Runtime(rt)}, tar); err != nil {
			return nil, fmt.Errorf("build %s: %w", name, err)
		}
		fns = append(fns, fnImage{name: name, ref: ref, tar: tar})
	}
	return fns, nil
}

func cut(name string) (rt, variant string, ok bool) {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '-' {
			rt, variant = name[:i], name[i+1:]
			return rt, variant, variant == "hello" || variant == "imports"
		}
	}
	return "", "", false
}
