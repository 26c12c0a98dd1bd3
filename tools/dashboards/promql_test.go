package dashboards

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

// Values given to Grafana's variables before a query is parsed or run.
type vars struct {
	rateInterval string // $__rate_interval
	route        string // $route, as Grafana writes it in a regex matcher
	instance     string // $instance
}

// allVars is every variable set to All, and $__rate_interval to a window
// no query writes by hand: a range that differs was not $__rate_interval.
var allVars = vars{rateInterval: "7m13s", route: ".*", instance: ".*"}

// substitute replaces Grafana's variables in expr.
func (v vars) substitute(expr string) string {
	return strings.NewReplacer(
		"$__rate_interval", v.rateInterval,
		"${route}", v.route, "$route", v.route,
		"${instance}", v.instance, "$instance", v.instance,
	).Replace(expr)
}

// leftover finds variables substitute does not know ($1 in label_replace's
// replacements is no variable).
var leftover = regexp.MustCompile(`\$\{?[A-Za-z_]`)

// queryInfo is what a parsed query reads.
type queryInfo struct {
	series []string        // names of the vector selectors
	ranges []time.Duration // of the range selectors
}

var promqlParser = parser.NewParser(parser.Options{})

// checkQuery parses expr (its variables substituted) and checks that it
// reads only series of the contract, with their labels: in matchers, and in
// by, without, on and ignoring clauses (which may also name the labels the
// query makes with label_replace or label_join).
func checkQuery(expr string) (queryInfo, error) {
	var info queryInfo
	if m := leftover.FindString(expr); m != "" {
		return info, fmt.Errorf("unknown variable %q", m)
	}
	parsed, err := promqlParser.ParseExpr(expr)
	if err != nil {
		return info, fmt.Errorf("does not parse: %w", err)
	}
	made := map[string]bool{}
	parser.Inspect(parsed, func(node parser.Node, _ []parser.Node) error {
		if c, ok := node.(*parser.Call); ok && (c.Func.Name == "label_replace" || c.Func.Name == "label_join") {
			if s, ok := c.Args[1].(*parser.StringLiteral); ok {
				made[s.Val] = true
			}
		}
		return nil
	})
	known := contractLabels()
	var errs []string
	checkGrouping := func(what string, labels []string) {
		for _, l := range labels {
			if !known[l] && !made[l] {
				errs = append(errs, fmt.Sprintf("%s (%s) names label %q, of no metric of the contract", what, strings.Join(labels, ", "), l))
			}
		}
	}
	parser.Inspect(parsed, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			if _, _, _, ok := seriesFamily(n.Name); !ok {
				errs = append(errs, fmt.Sprintf("series %q is not in the contract", n.Name))
				return nil
			}
			info.series = append(info.series, n.Name)
			for _, m := range n.LabelMatchers {
				if !labelAllowed(n.Name, m.Name) {
					errs = append(errs, fmt.Sprintf("%s has no label %q", n.Name, m.Name))
				}
			}
		case *parser.MatrixSelector:
			info.ranges = append(info.ranges, n.Range)
		case *parser.SubqueryExpr:
			info.ranges = append(info.ranges, n.Range)
		case *parser.AggregateExpr:
			checkGrouping("by/without", n.Grouping)
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				checkGrouping("on/ignoring", n.VectorMatching.MatchingLabels)
			}
		}
		return nil
	})
	if len(info.series) == 0 {
		errs = append(errs, "reads no series")
	}
	if len(errs) > 0 {
		return info, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	slices.Sort(info.series)
	info.series = slices.Compact(info.series)
	return info, nil
}
