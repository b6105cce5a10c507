// Package buildinfo reports which build of Switchyard is running.
package buildinfo

import "runtime/debug"

// Version is set at build time with
// -ldflags "-X github.com/switchyard/switchyard/libs/buildinfo.Version=v1.2.3".
var Version = ""

// String returns Version, or the VCS revision Go recorded, or "dev".
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return s.Value[:12]
			}
		}
	}
	return "dev"
}
