// Package yamlenv expands environment variables in YAML configuration
// files: ${NAME} and ${NAME:-default} in scalar values (never in comments
// or keys), so one file serves a laptop and a container network.
package yamlenv

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// envRef matches ${NAME} and ${NAME:-default}; a bare $NAME is left
// alone, since JSON Schema keywords ($ref, $id, $defs) start with '$'.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// Expand replaces ${NAME} and ${NAME:-default} in every scalar value
// below n, in place. A ${NAME} that is unset or empty and has no default
// is an error naming its line, so a missing setting never silently
// becomes "".
func Expand(n *yaml.Node) error {
	var errs []error
	var walk func(n *yaml.Node, isKey bool)
	walk = func(n *yaml.Node, isKey bool) {
		if n.Kind == yaml.ScalarNode && !isKey && strings.Contains(n.Value, "${") {
			n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
				m := envRef.FindStringSubmatch(ref)
				if v := os.Getenv(m[1]); v != "" {
					return v
				}
				if m[2] != "" {
					return m[3]
				}
				errs = append(errs, fmt.Errorf("line %d: environment variable %s is not set", n.Line, m[1]))
				return ""
			})
			// An unquoted value takes the type of what it expanded to
			// (rate: ${RATE} is a number when RATE is), as if written so.
			if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 && n.Tag == "!!str" {
				n.Tag = ""
				n.Tag = n.ShortTag()
			}
		}
		for i, c := range n.Content {
			walk(c, n.Kind == yaml.MappingNode && i%2 == 0)
		}
	}
	walk(n, false)
	return errors.Join(errs...)
}
