#!/usr/bin/env bash
# Builds the NuGet package of the C# binding, offline, with what Debian ships:
#   build/csharp/Mllp.<version>.nupkg   (<version> from Cargo.toml)
#     lib/net461/Mllp.dll (+ Mllp.xml)      compiled by mono's mcs against the .NET 4.6.1
#                                           reference assemblies (/usr/lib/mono/4.6.1-api)
#     runtimes/linux-x64/native/libmllp.so  the native library (built here when missing)
#     README.md
# The package is made by Debian's nuget (NuGet 2.8 on mono) from Mllp.nuspec; nothing is
# fetched. Why net461 and not netstandard2.0: see README.md ("NuGet package").
# The build goes to build/csharp (MLLP_CSHARP_BUILD overrides), never into bindings/.
#   MLLP_REBUILD=1 bash bindings/csharp/pack.sh     rebuilds libmllp first
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${MLLP_CSHARP_BUILD:-$REPO/build/csharp}
LIB="$REPO/target/release/libmllp.so"
API=/usr/lib/mono/4.6.1-api

for tool in mcs nuget; do
  command -v "$tool" >/dev/null 2>&1 || { echo "pack.sh: '$tool' not found (bash tests/setup.sh installs it)" >&2; exit 1; }
done
[ -f "$API/mscorlib.dll" ] || { echo "pack.sh: $API missing (Debian package mono-devel)" >&2; exit 1; }

if [ ! -f "$LIB" ] || [ "${MLLP_REBUILD:-0}" = 1 ]; then
  echo "== building libmllp.so (cargo build --release --lib)"
  (cd "$REPO" && cargo build --release --lib)
fi

VERSION=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$REPO/Cargo.toml" | head -n1)
[ -n "$VERSION" ] || { echo "pack.sh: no version in Cargo.toml" >&2; exit 1; }

mkdir -p "$BUILD/obj"
STAGE="$BUILD/nuget"
rm -rf "$STAGE"
mkdir -p "$STAGE/lib/net461" "$STAGE/runtimes/linux-x64/native"

# Assembly metadata (kept out of src/: the SDK project generates its own).
cat > "$BUILD/obj/AssemblyInfo.cs" <<EOF
[assembly: System.Reflection.AssemblyTitle("Mllp")]
[assembly: System.Reflection.AssemblyDescription("MLLP (HL7 v2 over TCP) server and client: .NET binding of the native mllp library")]
[assembly: System.Reflection.AssemblyVersion("$VERSION.0")]
[assembly: System.Reflection.AssemblyFileVersion("$VERSION.0")]
[assembly: System.Reflection.AssemblyInformationalVersion("$VERSION")]
[assembly: System.Runtime.Versioning.TargetFramework(".NETFramework,Version=v4.6.1", FrameworkDisplayName = ".NET Framework 4.6.1")]
EOF

echo "== compiling Mllp.dll (mcs, .NET Framework 4.6.1 reference assemblies)"
mcs -nologo -noconfig -nostdlib -lib:"$API" -r:mscorlib.dll -r:System.dll -r:System.Core.dll \
    -target:library -unsafe -optimize+ -warnaserror+ -nowarn:1591 \
    -doc:"$STAGE/lib/net461/Mllp.xml" -out:"$STAGE/lib/net461/Mllp.dll" \
    "$BUILD/obj/AssemblyInfo.cs" "$HERE"/src/*.cs
# The release profile keeps debug info (for the project's own profiling); the package
# carries the library without it (strip --strip-debug: symbols and code unchanged).
if command -v strip >/dev/null 2>&1; then
  strip --strip-debug -o "$STAGE/runtimes/linux-x64/native/libmllp.so" "$LIB"
else
  cp "$LIB" "$STAGE/runtimes/linux-x64/native/libmllp.so"
fi
cp "$HERE/README.md" "$STAGE/README.md"

echo "== packing (nuget pack)"
rm -f "$BUILD"/Mllp.*.nupkg
# NuGet 2.8 keeps its settings under $HOME; a private one keeps the user's untouched.
mkdir -p "$BUILD/obj/home"
HOME="$BUILD/obj/home" nuget pack "$HERE/Mllp.nuspec" -BasePath "$STAGE" -OutputDirectory "$BUILD" \
    -Properties "version=$VERSION" -NoPackageAnalysis -NonInteractive -Verbosity quiet
PKG="$BUILD/Mllp.$VERSION.nupkg"
[ -f "$PKG" ] || { echo "pack.sh: nuget did not write $PKG" >&2; exit 1; }
echo "== $PKG"
unzip -l "$PKG" | grep -E 'lib/|runtimes/|README'
