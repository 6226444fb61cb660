package web

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
)

func statusOf(kind string) int {
	if s, ok := v1.HTTPStatus(kind); ok {
		return s
	}
	return http.StatusInternalServerError
}

// parseTemplates builds one template per page: the layout with that
// page's "content".
func parseTemplates() (map[string]*template.Template, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" || base == "partials" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, err
		}
		pages[base] = t
	}
	return pages, nil
}

// assetTag is a hash of the static files: their URLs carry it, so a
// browser caches them until the binary changes.
func assetTag(static fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(static, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12], err
}

var funcs = template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return humanAge(time.Since(t)) + " ago"
	},
	"age": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return humanAge(time.Since(t))
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"dur":   humanDuration,
	"bytes": humanBytes,
	"ms":    func(v float64) string { return humanDuration(time.Duration(v * float64(time.Millisecond))) },
	"milli": func(v float64) string {
		if math.IsNaN(v) {
			return "–"
		}
		return fmt.Sprintf("%.0fm", v)
	},
	"short": func(s string, n int) string { return clip(s, n) },
	"digest": func(s string) string {
		s = strings.TrimPrefix(s, "sha256:")
		if len(s) > 12 {
			s = s[:12]
		}
		return s
	},
	"join": strings.Join,
	"q":    url.QueryEscape,
	"p":    url.PathEscape,
	"json": func(raw json.RawMessage) string {
		if len(raw) == 0 {
			return ""
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return string(raw)
		}
		b, _ := json.MarshalIndent(v, "", "  ")
		return string(b)
	},
	"deref": func(p *int32) int32 {
		if p == nil {
			return 0
		}
		return *p
	},
	"phase": func(phase string, ready bool) string {
		switch {
		case phase == v1.PhaseRunning && ready:
			return "good"
		case phase == v1.PhaseFailed || phase == v1.PhaseBackoff:
			return "bad"
		case phase == v1.PhaseStandby:
			return "idle"
		}
		return "busy"
	},
	"execClass": func(status string) string {
		switch status {
		case v1.ExecutionSucceeded:
			return "good"
		case v1.ExecutionRunning:
			return "busy"
		case v1.ExecutionAborted:
			return "idle"
		}
		return "bad"
	},
	"fieldOf": func(e *v1.Error) string {
		if e == nil {
			return ""
		}
		return e.Field
	},
	"formValue": func(r *actionResult, action, key string) string {
		if r == nil || r.Action != action || r.Form == nil {
			return ""
		}
		return r.Form[key]
	},
	"has":      slices.Contains[[]string],
	"cpu":      cpuString,
	"membytes": func(b int64) string { return humanBytes(float64(b)) },
	"meter": func(pct int, label string) template.HTML {
		return template.HTML(fmt.Sprintf(`<div class="meter" role="meter" aria-valuemin="0" aria-valuemax="100" aria-valuenow="%d" aria-label="%s"><svg viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true"><rect width="%d" height="8"/></svg></div>`,
			pct, template.HTMLEscapeString(label), pct))
	},
	"add": func(a, b int) int { return a + b },
}

func humanAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func humanBytes(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", v)
	}
	return trimFloat(v) + " " + units[i]
}
