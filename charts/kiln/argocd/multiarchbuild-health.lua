-- Argo CD health check for kiln's MultiArchBuild (kiln.dev).
-- Install as resource.customizations.health.kiln.dev_MultiArchBuild in
-- argocd-cm (see the chart's README). Without it Argo CD calls a
-- MultiArchBuild Healthy the moment it exists.
--   Healthy:     the index is published (or every platform is built when
--                publishIndex is false): Ready is True.
--   Degraded:    the build failed for good (Stalled is True): a platform
--                failed after its retries, or the index cannot be published.
--   Progressing: anything else, with the operator's own words: waiting for
--                the operator, for native nodes, building, publishing.
local hs = {}
hs.status = "Progressing"
hs.message = "waiting for the kiln operator"
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.message = "waiting for the kiln operator to see generation " .. tostring(generation)
  return hs
end
local function condition(type)
  if obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end
local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
if ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
elseif obj.status.phase ~= nil then
  hs.message = obj.status.phase
end
return hs
