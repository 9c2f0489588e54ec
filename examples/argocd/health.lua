-- Argo CD health of a Palisade AppArmorProfile or SeccompProfile, from the operator's
-- conditions (kstatus form): Accepted (this generation validated) and Ready (every
-- targeted node installed it).
local hs = {}
local function condition(t)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == t then
        return c
      end
    end
  end
  return nil
end

local accepted = condition("Accepted")
local ready = condition("Ready")
local deleting = condition("Deleting")

if obj.metadata.deletionTimestamp ~= nil and deleting ~= nil and deleting.status == "True" then
  hs.status = "Progressing"
  hs.message = deleting.message
elseif accepted == nil or ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Palisade operator to validate the profile"
elseif obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Palisade operator to validate generation " .. tostring(obj.metadata.generation)
elseif accepted.status == "False" then
  hs.status = "Degraded"
  hs.message = accepted.message
elseif accepted.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = accepted.message
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
elseif ready.reason == "Degraded" or ready.reason == "NoMatchingNodes" then
  hs.status = "Degraded"
  hs.message = ready.message
else
  hs.status = "Progressing"
  hs.message = ready.message
end
-- Argo CD has no warning health: a warning (syscall names the filter leaves out, rule
-- classes some nodes' kernels do not mediate) is added to the message.
for _, t in ipairs({"SyscallsIgnored", "RulesNotEnforced"}) do
  local warning = condition(t)
  if warning ~= nil and warning.status == "True" then
    hs.message = hs.message .. "; warning (" .. warning.reason .. "): " .. warning.message
  end
end
return hs
