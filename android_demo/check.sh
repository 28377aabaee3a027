#!/usr/bin/env bash
# Verify android_demo without the Android SDK (nothing here can reach Google's Maven or Gradle):
#   1. resources + manifest link with aapt2 against the API-29 framework-res.apk
#   2. the pure-Kotlin core compiles with NO Android classes on the classpath
#   3. every app source compiles with kotlinc against android-29-stubs.jar (../shared/android)
#      plus a compile-only LiteRT stub (stubs/), warnings as errors
#   4. JUnit 5 tests of the core on the JVM against Python's golden vectors (byte-for-byte)
# Installs what it needs when missing: apt packages (root) and the Kotlin compiler from npm
# (pinned, cached in build/tools). Exit 3 = prerequisites cannot be had here (tests/test_android.py
# skips on it); any other non-zero exit is a real failure.
#   Usage: android_demo/check.sh     (env: FRACTURE_EDGE_SHARED, FRACTURE_EDGE_TOOLS)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
SHARED=${FRACTURE_EDGE_SHARED:-$ROOT/../shared}
TOOLS=${FRACTURE_EDGE_TOOLS:-$HERE/build/tools}
BUILD=$HERE/build/check
KOTLIN_VERSION=2.4.20
APT_PACKAGES=(aapt android-framework-res junit5 libjna-java libandroid-json-java)
FRAMEWORK_RES=/usr/share/android-framework-res/framework-res.apk
JUNIT=/usr/share/java/junit-platform-console-standalone.jar
ORG_JSON=/usr/share/java/com.android.json.jar
ANDROID_STUBS=$SHARED/android/android-29-stubs.jar
APP=$HERE/app/src/main
KOTLINC=$TOOLS/node_modules/kotlin-compiler/bin/kotlinc
EXIT_UNAVAILABLE=3

step() { printf '== %s\n' "$*"; }
unavailable() { echo "check.sh: prerequisites unavailable: $*" >&2; exit "$EXIT_UNAVAILABLE"; }
fail() { echo "check.sh: FAILED: $*" >&2; exit 1; }

ensure_apt_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || unavailable "no apt-get to install ${missing[*]}"
    [ "$(id -u)" -eq 0 ] || unavailable "not root, cannot install ${missing[*]}"
    step "installing ${missing[*]} (apt)"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
        >"$TOOLS/apt.log" 2>&1 || unavailable "apt-get failed (see $TOOLS/apt.log)"
}

ensure_kotlinc() {
    if [ -x "$KOTLINC" ] && [ "$(cat "$TOOLS/node_modules/kotlin-compiler/build.txt" 2>/dev/null)" = "$KOTLIN_VERSION" ]; then
        return 0
    fi
    command -v npm >/dev/null || unavailable "no npm to install kotlin-compiler@$KOTLIN_VERSION"
    step "installing kotlin-compiler@$KOTLIN_VERSION (npm, into $TOOLS)"
    npm install --prefix "$TOOLS" --no-audit --no-fund --no-save "kotlin-compiler@$KOTLIN_VERSION" \
        >"$TOOLS/npm.log" 2>&1 || unavailable "npm install failed (see $TOOLS/npm.log)"
}

gradle_value() {  # gradle_value KEY -> the literal after `KEY = ` in app/build.gradle.kts
    sed -n "s/^ *$1 = \"\\{0,1\\}\\([^\" ]*\\)\"\\{0,1\\}.*/\\1/p" "$HERE/app/build.gradle.kts" | head -n 1
}

link_resources() {
    step "aapt2: compile resources, link with the manifest against API-29 framework-res.apk"
    local namespace min_sdk
    namespace=$(gradle_value namespace)
    min_sdk=$(gradle_value minSdk)
    [ -n "$namespace" ] && [ -n "$min_sdk" ] || fail "cannot read namespace/minSdk from app/build.gradle.kts"
    # AGP injects the package from `namespace`; aapt2 needs it in the manifest itself.
    sed "s|<manifest |<manifest package=\"$namespace\" |" "$APP/AndroidManifest.xml" >"$BUILD/AndroidManifest.xml"
    aapt2 compile --dir "$APP/res" -o "$BUILD/res.zip"
    aapt2 link -I "$FRAMEWORK_RES" --manifest "$BUILD/AndroidManifest.xml" -A "$APP/assets" -0 tflite \
        --min-sdk-version "$min_sdk" --target-sdk-version 29 --java "$BUILD/gen" -o "$BUILD/app-res.apk" "$BUILD/res.zip"
    local model   # whichever artifact export copied (model_int8.tflite, model_int8_dynamic.tflite, ...)
    for model in "$APP"/assets/*.tflite; do
        [ -f "$model" ] || continue
        unzip -v "$BUILD/app-res.apk" "assets/${model##*/}" | grep -q " Stored " \
            || fail "assets/${model##*/} is compressed in the APK (noCompress tflite lost)"
    done
}

compile_app() {
    local kotlinc_opts=(-Werror -no-reflect -jvm-target 1.8 -Xjdk-release=1.8)
    step "javac: compile-only LiteRT stub and the generated R class"
    javac -nowarn --release 8 -d "$BUILD/stub-classes" $(find "$HERE/stubs" -name '*.java')
    javac -nowarn --release 8 -cp "$ANDROID_STUBS" -d "$BUILD/r-classes" $(find "$BUILD/gen" -name '*.java')
    step "kotlinc: the core alone (no android.* on the classpath, only org.json)"
    "$KOTLINC" "${kotlinc_opts[@]}" -cp "$ORG_JSON" -d "$BUILD/core-classes" "$APP/kotlin/org/fractureedge/core" 2>&1
    step "kotlinc: every app source against android-29-stubs.jar + the LiteRT stub"
    "$KOTLINC" "${kotlinc_opts[@]}" -cp "$ANDROID_STUBS:$BUILD/stub-classes:$BUILD/r-classes" \
        -d "$BUILD/app-classes" "$APP/kotlin" 2>&1
    local users
    users=$(grep -rl 'org\.tensorflow\.lite' "$APP/kotlin" | wc -l)
    [ "$users" -eq 1 ] || fail "LiteRT must be used in exactly one class, found $users files importing org.tensorflow.lite"
}

run_tests() {
    local stdlib=$TOOLS/node_modules/kotlin-compiler/lib/kotlin-stdlib.jar
    step "kotlinc: JVM tests of the core"
    "$KOTLINC" -Werror -no-reflect -cp "$BUILD/core-classes:$JUNIT:$ORG_JSON" -d "$BUILD/test-classes" \
        "$HERE/app/src/test/kotlin" 2>&1
    step "junit: core vs golden vectors from scripts/make_android_golden.py"
    java -jar "$JUNIT" --disable-banner --disable-ansi-colors --details=summary --fail-if-no-tests \
        -cp "$BUILD/core-classes:$BUILD/test-classes:$HERE/app/src/test/resources:$stdlib:$ORG_JSON" \
        --scan-classpath "$BUILD/test-classes"
}

main() {
    local start=$SECONDS
    mkdir -p "$TOOLS"
    [ -f "$ANDROID_STUBS" ] || unavailable "$ANDROID_STUBS not found (set FRACTURE_EDGE_SHARED)"
    ensure_apt_packages
    ensure_kotlinc
    rm -rf "$BUILD" && mkdir -p "$BUILD"
    link_resources
    compile_app
    run_tests
    step "android_demo check passed in $((SECONDS - start)) s"
}

main "$@"
