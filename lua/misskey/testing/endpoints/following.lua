--- misskey.testing.endpoints.following: following/create, following/delete
-- and the follow and unfollow they do (with their streaming events).
local params = require "misskey.testing.params"
local audience = require "misskey.testing.audience"
local Fake = require "misskey.testing.fake"

local follows = audience.follows
local ID, BOOLEAN, object = params.ID, params.BOOLEAN, params.object

local endpoints = {}

local NO_SUCH_USER_FOLLOW = { id = "fcd2eef9-a9b2-4c4f-8624-038099e90aa5", message = "No such user." }

function Fake:_follow(follower, followee)
  if follower == followee then return nil, "FOLLOWEE_IS_YOURSELF" end
  if follows(follower, followee.id) then return nil, "ALREADY_FOLLOWING" end
  follower.following[followee.id] = true
  self:_main(follower, "follow", self:_pack_user_detailed(followee, follower))
  self:_main(followee, "followed", self:_pack_user_lite(follower))
  self:_notify(followee, "follow", follower)
  return true
end

function Fake:_unfollow(follower, followee)
  if follower == followee then return nil, "FOLLOWEE_IS_YOURSELF" end
  if not follows(follower, followee.id) then return nil, "NOT_FOLLOWING" end
  follower.following[followee.id] = nil
  self:_main(follower, "unfollow", self:_pack_user_detailed(followee, follower))
  return true
end

local FOLLOW_ERRORS = {
  NO_SUCH_USER = NO_SUCH_USER_FOLLOW,
  FOLLOWEE_IS_YOURSELF = { id = "26fbe7bb-a331-4857-af17-205b426669a9", message = "Followee is yourself." },
  ALREADY_FOLLOWING = { id = "35387507-38c7-4cb9-9197-300b93783fa0", message = "You are already following that user." },
  NOT_FOLLOWING = { id = "5dbf82f5-c92b-40b1-87d1-6c8c0741fd09", message = "You are not following that user." },
}

-- following/create and following/delete: the same lookup around `act`
-- (Fake._follow or Fake._unfollow).
local function following(act, schema)
  return {
    credential = true,
    params = schema,
    errors = FOLLOW_ERRORS,
    handler = function(self, ps, ctx)
      local followee = self._by_id[ps.userId]
      if not followee then return nil, "NO_SUCH_USER" end
      local ok, code = act(self, ctx.user, followee)
      if not ok then return nil, code end
      return self:_pack_user_lite(followee)
    end,
  }
end

endpoints["following/create"] = following(Fake._follow,
  object({ { "userId", ID }, { "withReplies", BOOLEAN } }, { "userId" }))
endpoints["following/delete"] = following(Fake._unfollow, object({ { "userId", ID } }, { "userId" }))

return endpoints
