package cli

import (
	"strings"

	"github.com/spf13/cobra"

	v1 "berth.dev/berth/api/v1"
)

// kindInfo is how the command line names a kind.
type kindInfo struct {
	Kind   string // Service
	Plural string // services
	Short  string // svc
	// Scoped kinds live in an environment.
	Scoped bool
}

var kinds = []kindInfo{
	{v1.KindEnvironment, "environments", "env", false},
	{v1.KindService, "services", "svc", true},
	{v1.KindFunction, "functions", "fn", true},
	{v1.KindTopic, "topics", "", true},
	{v1.KindWorkflow, "workflows", "wf", true},
	{v1.KindRevision, "revisions", "rev", true},
	{v1.KindInstance, "instances", "inst", true},
	{v1.KindEvent, "events", "ev", true},
}

// lower is the kind as it appears in "service/web".
func (k kindInfo) lower() string { return strings.ToLower(k.Kind) }

// resolveKind accepts a kind's singular, plural or short name, in any case.
func resolveKind(cmd *cobra.Command, s string) (kindInfo, error) {
	ls := strings.ToLower(s)
	for _, k := range kinds {
		if ls == k.lower() || ls == k.Plural || (k.Short != "" && ls == k.Short) {
			return k, nil
		}
	}
	return kindInfo{}, usageErrorf(cmd, "unknown kind %q; known kinds: %s", s, knownKinds())
}

func knownKinds() string {
	var parts []string
	for _, k := range kinds {
		if k.Short == "" {
			parts = append(parts, k.Plural)
			continue
		}
		parts = append(parts, k.Plural+" ("+k.Short+")")
	}
	return strings.Join(parts, ", ")
}

// kindAndName reads "KIND NAME", "KIND/NAME" or "KIND" from args.
func kindAndName(cmd *cobra.Command, args []string) (kindInfo, string, error) {
	if len(args) == 0 {
		return kindInfo{}, "", usageErrorf(cmd, "missing the kind; known kinds: %s", knownKinds())
	}
	first, name, slash := strings.Cut(args[0], "/")
	k, err := resolveKind(cmd, first)
	if err != nil {
		return kindInfo{}, "", err
	}
	rest := args[1:]
	if slash {
		if name == "" {
			return kindInfo{}, "", usageErrorf(cmd, "missing the name after %q", first+"/")
		}
		if len(rest) > 0 {
			return kindInfo{}, "", usageErrorf(cmd, "unexpected argument %q", rest[0])
		}
		return k, name, nil
	}
	switch len(rest) {
	case 0:
		return k, "", nil
	case 1:
		return k, rest[0], nil
	}
	return kindInfo{}, "", usageErrorf(cmd, "unexpected argument %q", rest[1])
}
