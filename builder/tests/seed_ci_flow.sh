#!/usr/bin/env bash
# The CI flow of the seed guides (the GitHub Actions and GitLab CI
# examples under "CI Driver"), with kiln in place of kaniko's executor:
# one build per platform writing --digest-file=$DIGESTS_DIR/<platform>.digest,
# then --driver=ci publishing the index from those files.
#
# Run by the Rust test `seed_ci_flow` in driver_ci.rs, which passes:
#   KILN      the kiln binary
#   REGISTRY  a plain-HTTP registry on loopback (127.0.0.1:PORT)
#   WORK      an empty scratch directory
#   SHA       the commit the guides tag with (${{ github.sha }}, $CI_COMMIT_SHA)
# and checks what it leaves behind. Needs skopeo and jq.
#
# Differences from the guides: the context is a generated directory with a
# RUN-less Dockerfile (any platform builds on any host).
set -euo pipefail

: "${KILN:?the kiln binary}" "${REGISTRY:?registry host}" "${WORK:?scratch directory}"
SHA="${SHA:-0123abc}"

PLATFORMS="linux/amd64,linux/arm64"
DIGESTS_DIR="$WORK/digests"
CONTEXT="$WORK/context"
IMAGE="$REGISTRY/app"

mkdir -p "$DIGESTS_DIR" "$CONTEXT"
cat > "$CONTEXT/Dockerfile" <<'EOF'
FROM scratch
COPY hello.txt /hello.txt
EOF
echo "hello from the seed CI flow" > "$CONTEXT/hello.txt"

fail() {
  echo "seed_ci_flow: $*" >&2
  exit 1
}

# --- job 1: build and push per-architecture images -------------------------
for platform in $(echo $PLATFORMS | tr ',' ' '); do
  echo "Building for $platform..."
  "$KILN" \
    --dockerfile=Dockerfile \
    --context="dir://$CONTEXT" \
    --destination="$IMAGE:$SHA-${platform//\//-}" \
    --platform=$platform \
    --driver=local \
    --cache=true \
    --cache-repo="$IMAGE/cache" \
    --digest-file="$DIGESTS_DIR/${platform//\//-}.digest"
done

echo "Build artifacts:"
ls -la "$DIGESTS_DIR/"

# --- job 2: create and push the index ---------------------------------------
echo "Aggregating digests..."
for digest_file in "$DIGESTS_DIR"/*.digest; do
  platform=$(basename "$digest_file" .digest | tr '-' '/')
  digest=$(cat "$digest_file")
  echo "$platform: $digest"
  [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || fail "$digest_file holds '$digest'"
done

"$KILN" \
  --dockerfile=Dockerfile \
  --context="dir://$CONTEXT" \
  --destination="$IMAGE:$SHA" \
  --platform=linux/amd64,linux/arm64 \
  --driver=ci \
  --digests-from="$DIGESTS_DIR" \
  --publish-index=true \
  --index-annotations="org.opencontainers.image.title=app" \
  --index-annotations="org.opencontainers.image.revision=$SHA" \
  --digest-file="$WORK/index.digest"

# --- checks -------------------------------------------------------------------
raw=$(skopeo inspect --raw --tls-verify=false "docker://$IMAGE:$SHA")
media_type=$(jq -r .mediaType <<<"$raw")
[ "$media_type" = "application/vnd.oci.image.index.v1+json" ] ||
  fail "index media type is $media_type"

children=$(jq -r '[.manifests[] | .platform.os + "/" + .platform.architecture + (if .platform.variant then "/" + .platform.variant else "" end) + "=" + .digest] | join(" ")' <<<"$raw")
want="linux/amd64=$(cat "$DIGESTS_DIR/linux-amd64.digest") linux/arm64=$(cat "$DIGESTS_DIR/linux-arm64.digest")"
[ "$children" = "$want" ] || fail "index children are '$children', want '$want'"

[ "$(jq -r '.annotations["org.opencontainers.image.revision"]' <<<"$raw")" = "$SHA" ] ||
  fail "revision annotation missing: $raw"
[ "$(jq -r '.annotations["org.opencontainers.image.title"]' <<<"$raw")" = "app" ] ||
  fail "title annotation missing: $raw"

for arch in amd64 arm64; do
  got=$(skopeo inspect --override-os linux --override-arch "$arch" --tls-verify=false \
    "docker://$IMAGE:$SHA" | jq -r .Architecture)
  [ "$got" = "$arch" ] || fail "--override-arch $arch resolved to $got"
done

index_digest="sha256:$(printf '%s' "$raw" | sha256sum | cut -d' ' -f1)"
[ "$(cat "$WORK/index.digest")" = "$index_digest" ] ||
  fail "--digest-file holds $(cat "$WORK/index.digest"), the index is $index_digest"

echo "published $IMAGE:$SHA@$index_digest"
