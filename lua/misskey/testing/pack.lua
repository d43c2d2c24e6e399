--- misskey.testing.pack: the JSON shapes the fake answers with, as api.json's
-- components.schemas define them (UserLite, UserDetailed, Note, DriveFile,
-- Notification), each as the viewer sees it.
local json = require "misskey.json"
local common = require "misskey.testing.common"
local audience = require "misskey.testing.audience"
local Fake = require "misskey.testing.fake"

local null, array = json.null, json.array
local pairs, ipairs = pairs, ipairs
local iso, nn, copy = common.iso, common.nn, common.copy
local follows, visible_to = audience.follows, audience.visible_to

function Fake:_avatar_url(user)
  return ("%s/identicon/%s@%s"):format(self.base_url, user.username:lower(), self.host)
end

function Fake:_counts(user)
  local notes, followers, following = 0, 0, 0
  for _, id in ipairs(self._order) do
    if self._notes[id].userId == user.id then notes = notes + 1 end
  end
  for _, other in ipairs(self._users) do
    if other.following[user.id] then followers = followers + 1 end
  end
  for _ in pairs(user.following) do following = following + 1 end
  return notes, followers, following
end

-- UserLite
function Fake:_pack_user_lite(user)
  return {
    id = user.id, name = nn(user.name), username = user.username, host = null,
    avatarUrl = self:_avatar_url(user), avatarBlurhash = null, avatarDecorations = array{},
    isBot = user.isBot, isCat = user.isCat, emojis = {}, onlineStatus = "unknown", badgeRoles = array{},
  }
end

-- UserDetailed: UserDetailedNotMe for others (with the relation to `viewer`
-- when there is one), MeDetailed for the viewer themself.
function Fake:_pack_user_detailed(user, viewer)
  local u = self:_pack_user_lite(user)
  local notes, followers, following = self:_counts(user)
  local d = {
    url = null, uri = null, movedTo = null, alsoKnownAs = null, createdAt = iso(user.createdAt),
    updatedAt = null, lastFetchedAt = null, bannerUrl = null, bannerBlurhash = null, isLocked = false,
    isSilenced = false, isSuspended = false, description = nn(user.description), location = null,
    birthday = null, lang = null, fields = array{}, verifiedLinks = array{}, followersCount = followers,
    followingCount = following, notesCount = notes, pinnedNoteIds = array{}, pinnedNotes = array{},
    pinnedPageId = null, pinnedPage = null, publicReactions = true, followingVisibility = "public",
    followersVisibility = "public", chatScope = "mutual", canChat = true, roles = array{}, memo = null,
    twoFactorEnabled = false, usePasswordLessLogin = false, securityKeys = false,
  }
  for k, v in pairs(d) do u[k] = v end
  if viewer and viewer ~= user then
    u.isFollowing = follows(viewer, user.id)
    u.isFollowed = follows(user, viewer.id)
    u.hasPendingFollowRequestFromYou = false
    u.hasPendingFollowRequestToYou = false
    u.isBlocking, u.isBlocked, u.isMuted, u.isRenoteMuted = false, false, false, false
    u.notify = "none"
    u.withReplies = false
  elseif viewer == user then
    local me = {
      avatarId = null, bannerId = null, followedMessage = null, isModerator = false, isAdmin = false,
      injectFeaturedNote = true, receiveAnnouncementEmail = true, alwaysMarkNsfw = false, autoSensitive = false,
      carefulBot = false, autoAcceptFollowed = true, noCrawle = false, preventAiLearning = true,
      isExplorable = true, isDeleted = false, twoFactorBackupCodesStock = "none", hideOnlineStatus = false,
      hasUnreadSpecifiedNotes = false, hasUnreadMentions = false, hasUnreadAnnouncement = false,
      unreadAnnouncements = array{}, hasUnreadAntenna = false, hasUnreadChannel = false,
      hasUnreadChatMessages = false, hasUnreadNotification = false, hasPendingReceivedFollowRequest = false,
      unreadNotificationsCount = 0, mutedWords = array{}, hardMutedWords = array{}, mutedInstances = array{},
      emailNotificationTypes = array{}, achievements = array{}, loggedInDays = 1, email = null,
      emailVerified = false, securityKeysList = array{},
    }
    for k, v in pairs(me) do u[k] = v end
  end
  return u
end

-- Note, as NoteEntityService.pack gives it to `viewer`; a note the viewer
-- may not see comes back with isHidden = true and no content.
function Fake:_pack_note(note, viewer, detail)
  local user = self._by_id[note.userId]
  local p = {
    id = note.id, createdAt = iso(note.createdAt), userId = note.userId, user = self:_pack_user_lite(user),
    text = nn(note.text), cw = nn(note.cw), visibility = note.visibility, localOnly = note.localOnly or nil,
    reactionAcceptance = nn(note.reactionAcceptance), renoteCount = note.renoteCount,
    repliesCount = note.repliesCount, reactionCount = note.reactionCount or 0, reactions = copy(note.reactions or {}),
    reactionEmojis = {},
    fileIds = array{}, files = array{}, replyId = nn(note.replyId), renoteId = nn(note.renoteId),
  }
  for i, id in ipairs(note.fileIds or {}) do
    p.fileIds[i] = id
    p.files[i] = self:_pack_file(self._files[id])
  end
  if note.visibility == "specified" then
    local ids = array{}
    for i, id in ipairs(note.visibleUserIds) do ids[i] = id end
    p.visibleUserIds = ids
  end
  if note.poll then
    local choices = array{}
    for i, text in ipairs(note.poll.choices) do choices[i] = { text = text, votes = 0, isVoted = false } end
    p.hasPoll = true
    p.poll = { multiple = note.poll.multiple, expiresAt = note.poll.expiresAt and iso(note.poll.expiresAt) or null,
               choices = choices }
  end
  if detail then
    p.clippedCount = 0
    if note.replyId and self._notes[note.replyId] then
      p.reply = self:_pack_note(self._notes[note.replyId], viewer, false)
    end
    if note.renoteId and self._notes[note.renoteId] then
      p.renote = self:_pack_note(self._notes[note.renoteId], viewer, true)
    end
    if viewer then p.myReaction = nn(note.reacted and note.reacted[viewer.id]) end
  end
  if not visible_to(note, viewer) then
    p.visibleUserIds, p.poll, p.text, p.cw = nil, nil, null, null
    p.fileIds, p.files = array{}, array{}
    p.isHidden = true
  end
  return p
end

-- DriveFile
function Fake:_pack_file(file)
  return {
    id = file.id, createdAt = iso(file.createdAt), name = file.name, type = file.type, md5 = null,
    size = file.size, isSensitive = file.isSensitive, blurhash = null, properties = {},
    url = self.base_url .. "/files/" .. file.id, thumbnailUrl = null, comment = nn(file.comment),
    folderId = null, folder = null, userId = file.userId, user = null,
  }
end

-- Notification
function Fake:_pack_notification(n, viewer)
  local p = { id = n.id, createdAt = iso(n.createdAt), type = n.type, isRead = n.isRead }
  if n.userId then
    p.userId = n.userId
    p.user = self:_pack_user_lite(self._by_id[n.userId])
  end
  if n.fields.noteId and self._notes[n.fields.noteId] then
    p.note = self:_pack_note(self._notes[n.fields.noteId], viewer, true)
  end
  if n.fields.reaction then p.reaction = n.fields.reaction end
  return p
end

return Fake
