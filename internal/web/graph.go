package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"strings"

	v1 "berth.dev/berth/api/v1"
)

// aslState is what the graph needs of a States Language state: where it
// can go. The definition was validated at apply (by the workflow engine's
// parser); this reads only the shape, leniently, for drawing.
type aslState struct {
	Name     string
	Type     string
	Resource string
	End      bool
	// Targets are the states it may go to, with how: "" (Next),
	// "choice", "default", "catch".
	Targets []edgeTarget
	// Branches counts a Parallel state's branches.
	Branches int
}

type edgeTarget struct{ To, How string }

// orderedKeys answers an object's keys in the order the JSON gives them:
// a definition's states are drawn in the order their author wrote them.
func orderedKeys(raw json.RawMessage) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not an object")
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// parseDefinition reads a definition's start and states.
func parseDefinition(def json.RawMessage) (string, []aslState, error) {
	var top struct {
		StartAt string                     `json:"StartAt"`
		States  map[string]json.RawMessage `json:"States"`
	}
	if err := json.Unmarshal(def, &top); err != nil {
		return "", nil, err
	}
	var statesRaw struct {
		States json.RawMessage `json:"States"`
	}
	json.Unmarshal(def, &statesRaw)
	order, err := orderedKeys(statesRaw.States)
	if err != nil {
		return "", nil, fmt.Errorf("States: %w", err)
	}
	states := make([]aslState, 0, len(order))
	for _, name := range order {
		var s struct {
			Type     string `json:"Type"`
			Next     string `json:"Next"`
			End      bool   `json:"End"`
			Default  string `json:"Default"`
			Resource string `json:"Resource"`
			Choices  []struct {
				Next string `json:"Next"`
			} `json:"Choices"`
			Catch []struct {
				Next string `json:"Next"`
			} `json:"Catch"`
			Branches []json.RawMessage `json:"Branches"`
		}
		if err := json.Unmarshal(top.States[name], &s); err != nil {
			return "", nil, fmt.Errorf("States.%s: %w", name, err)
		}
		st := aslState{Name: name, Type: s.Type, Resource: s.Resource, Branches: len(s.Branches),
			End: s.End || s.Type == "Succeed" || s.Type == "Fail"}
		add := func(to, how string) {
			if to == "" {
				return
			}
			for _, t := range st.Targets {
				if t.To == to {
					return // one arrow between two states is enough
				}
			}
			st.Targets = append(st.Targets, edgeTarget{to, how})
		}
		add(s.Next, "")
		for _, c := range s.Choices {
			add(c.Next, "choice")
		}
		add(s.Default, "default")
		for _, c := range s.Catch {
			add(c.Next, "catch")
		}
		states = append(states, st)
	}
	return top.StartAt, states, nil
}

// Node states on the drawing of an execution.
const (
	nodeVisited = "visited" // entered and left
	nodeCurrent = "current" // entered, not left, the execution running
	nodeFailed  = "failed"  // where the execution failed, timed out or was stopped
)

// executionPath reads which states an execution went through from its
// history: each top-level state's outcome, and the transitions taken.
func executionPath(states []aslState, exec *v1.Execution, history []v1.HistoryEvent) (map[string]string, map[[2]string]bool) {
	known := map[string]bool{}
	for _, s := range states {
		known[s.Name] = true
	}
	status := map[string]string{}
	taken := map[[2]string]bool{}
	prev, open := "", ""
	for _, ev := range history {
		name := ev.StateName
		if name == "" && len(ev.Details) > 0 {
			var d struct {
				Name string `json:"name"`
			}
			json.Unmarshal(ev.Details, &d)
			name = d.Name
		}
		switch {
		case strings.HasSuffix(ev.Type, "StateEntered") && known[name]:
			if prev != "" {
				taken[[2]string{prev, name}] = true
			}
			status[name] = nodeCurrent
			prev, open = name, name
		case strings.HasSuffix(ev.Type, "StateExited") && known[name]:
			status[name] = nodeVisited
			if open == name {
				open = ""
			}
		}
	}
	if open != "" && exec != nil {
		switch exec.Status {
		case v1.ExecutionRunning:
		case v1.ExecutionSucceeded:
			status[open] = nodeVisited
		default:
			status[open] = nodeFailed
		}
	}
	return status, taken
}

// Graph geometry, in SVG units.
const (
	nodeW, nodeH = 150.0, 44.0
	colW, rowH   = 174.0, 84.0
	graphPad     = 16.0
)

type graphNode struct {
	s      aslState
	layer  int
	pos    int
	x, y   float64
	status string
}

// layout puts each state on a row below every state that leads to it
// (back edges, a loop's return, aside) and side by side within a row, in
// the order they were written; states nothing reaches go last.
func layout(start string, states []aslState) ([]*graphNode, map[string]*graphNode) {
	byName := map[string]*graphNode{}
	nodes := make([]*graphNode, 0, len(states))
	for _, s := range states {
		n := &graphNode{s: s, layer: -1}
		nodes = append(nodes, n)
		byName[s.Name] = n
	}
	// Forward edges: those a depth-first walk from the start does not
	// find closing a cycle.
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var topo []string
	back := map[[2]string]bool{}
	var dfs func(name string)
	dfs = func(name string) {
		color[name] = grey
		for _, t := range byName[name].s.Targets {
			if byName[t.To] == nil {
				continue
			}
			switch color[t.To] {
			case white:
				dfs(t.To)
			case grey:
				back[[2]string{name, t.To}] = true
			}
		}
		color[name] = black
		topo = append(topo, name)
	}
	if byName[start] != nil {
		dfs(start)
		byName[start].layer = 0
	}
	for i := len(topo) - 1; i >= 0; i-- {
		u := byName[topo[i]]
		for _, t := range u.s.Targets {
			v := byName[t.To]
			if v == nil || back[[2]string{u.s.Name, t.To}] || u.layer < 0 {
				continue
			}
			v.layer = max(v.layer, u.layer+1)
		}
	}
	deepest := -1
	for _, n := range nodes {
		deepest = max(deepest, n.layer)
	}
	perLayer := map[int]int{}
	for _, n := range nodes {
		if n.layer < 0 {
			deepest++
			n.layer = deepest
		}
		n.pos = perLayer[n.layer]
		perLayer[n.layer]++
	}
	widest := 1
	for _, c := range perLayer {
		widest = max(widest, c)
	}
	for _, n := range nodes {
		// Centre each row under the widest.
		offset := (float64(widest) - float64(perLayer[n.layer])) * colW / 2
		n.x = graphPad + offset + float64(n.pos)*colW
		n.y = graphPad + float64(n.layer)*rowH
	}
	return nodes, byName
}

// workflowGraph draws a definition as SVG, an execution's path on it when
// status is given. A definition that does not read draws nothing.
func workflowGraph(def json.RawMessage, status map[string]string, taken map[[2]string]bool) (template.HTML, error) {
	start, states, err := parseDefinition(def)
	if err != nil {
		return "", err
	}
	nodes, byName := layout(start, states)
	width, height := 0.0, 0.0
	for _, n := range nodes {
		n.status = status[n.s.Name]
		width = max(width, n.x+nodeW+graphPad)
		height = max(height, n.y+nodeH+graphPad)
	}
	// Room on the right for the arcs of back edges.
	width += 40
	var b strings.Builder
	// A marker scales with its edge's stroke: a taken edge is twice as
	// thick, so its arrow is declared half as big to draw the same size.
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="ah"/></marker>` +
		`<marker id="arrow-taken" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="4" markerHeight="4" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="ah taken"/></marker></defs>`)
	for _, n := range nodes {
		for _, t := range n.s.Targets {
			m := byName[t.To]
			if m == nil {
				continue
			}
			class := "edge"
			if t.How == "catch" {
				class += " catch"
			}
			marker := "arrow"
			if taken[[2]string{n.s.Name, t.To}] {
				class += " taken"
				marker = "arrow-taken"
			}
			var d string
			if m.layer > n.layer+1 {
				// Over rows in between: round the right of what is there,
				// so the line passes behind no state.
				x1, y1 := n.x+nodeW, n.y+nodeH/2
				x2, y2 := m.x+nodeW, m.y+nodeH/2
				bend := max(x1, x2) + 30
				for _, o := range nodes {
					if o.layer > n.layer && o.layer < m.layer {
						bend = max(bend, o.x+nodeW+30)
					}
				}
				width = max(width, bend+graphPad)
				d = fmt.Sprintf("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f", x1, y1, bend, y1, bend, y2, x2, y2)
			} else if m.layer > n.layer {
				x1, y1 := n.x+nodeW/2, n.y+nodeH
				x2, y2 := m.x+nodeW/2, m.y
				d = fmt.Sprintf("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f", x1, y1, x1, y1+30, x2, y2-30, x2, y2)
			} else {
				// Back or sideways: round the right-hand side.
				x1, y1 := n.x+nodeW, n.y+nodeH/2
				x2, y2 := m.x+nodeW, m.y+nodeH/2
				bend := max(x1, x2) + 36
				d = fmt.Sprintf("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f", x1, y1, bend, y1, bend, y2, x2, y2)
			}
			fmt.Fprintf(&b, `<path class="%s" d="%s" marker-end="url(#%s)"><title>%s → %s%s</title></path>`, class, d, marker,
				template.HTMLEscapeString(n.s.Name), template.HTMLEscapeString(t.To), howLabel(t.How))
		}
	}
	for _, n := range nodes {
		class := "node"
		if n.status != "" {
			class += " " + n.status
		}
		if n.s.Name == start {
			class += " start"
		}
		sub := n.s.Type
		switch {
		case n.s.Type == "Task" && n.s.Resource != "":
			sub = n.s.Resource
		case n.s.Type == "Parallel":
			sub = fmt.Sprintf("Parallel · %d branches", n.s.Branches)
		}
		title := n.s.Name + " (" + n.s.Type + ")"
		if n.status != "" {
			title += ": " + n.status
		}
		fmt.Fprintf(&b, `<g class="%s" data-state="%s"><title>%s</title><rect x="%.1f" y="%.1f" width="%g" height="%g" rx="8"/>`,
			class, template.HTMLEscapeString(n.s.Name), template.HTMLEscapeString(title), n.x, n.y, nodeW, nodeH)
		fmt.Fprintf(&b, `<text class="nn" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, n.x+nodeW/2, n.y+19, template.HTMLEscapeString(clip(n.s.Name, 18)))
		fmt.Fprintf(&b, `<text class="nt" x="%.1f" y="%.1f" text-anchor="middle">%s</text></g>`, n.x+nodeW/2, n.y+35, template.HTMLEscapeString(clip(sub, 24)))
	}
	b.WriteString(`</svg>`)
	head := fmt.Sprintf(`<svg class="graph" viewBox="0 0 %g %g" width="%g" role="img" aria-label="%s">`, width, height, width,
		template.HTMLEscapeString(graphSummary(start, states, status)))
	return template.HTML(head + b.String()), nil
}

func howLabel(how string) string {
	if how == "" {
		return ""
	}
	return " (" + how + ")"
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// graphSummary says the graph in words: the start, the states, and how
// far an execution went.
func graphSummary(start string, states []aslState, status map[string]string) string {
	names := make([]string, len(states))
	for i, s := range states {
		names[i] = s.Name
		if st := status[s.Name]; st != "" {
			names[i] += " (" + st + ")"
		}
	}
	return fmt.Sprintf("State machine starting at %s with states: %s", start, strings.Join(names, ", "))
}
