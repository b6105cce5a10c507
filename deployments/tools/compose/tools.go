//go:build tools

// Package composetool pins the Docker Compose version used to validate
// docker-compose.yml.
package composetool

import _ "github.com/docker/compose/v5/cmd"
