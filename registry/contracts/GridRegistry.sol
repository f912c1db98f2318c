// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title Grid registry: nodes, jobs, rounds, attested results, stakes, rewards, audit anchors.
/// @notice Storage holds only what later checks need (membership, attestations, escrowed
/// amounts, one digest of all rounds); everything a reader wants to display is in events.
contract GridRegistry {
    enum Role {
        None,
        Domain,
        Network
    }

    enum Status {
        None,
        Open,
        Finalized,
        Failed,
        Cancelled
    }

    struct Node {
        Role role;
        uint64 reputation;
        bytes32 keyHash;
    }

    /// @dev Slot 0 is everything `logRound` and `attest` touch, so each pays for one slot.
    struct Job {
        address coordinator;
        Status status;
        bool stakeRequired;
        uint16 participantCount;
        uint16 attestations;
        uint32 rounds;
        uint64 deadline;
        bytes32 specHash;
        bytes32 roundsDigest;
        bytes32 modelHash;
        uint128 bounty;
        uint128 stake;
        uint128 refundPool;
    }

    struct Member {
        uint16 index; // 1-based; 0 means "not a participant"
        bool staked;
    }

    /// @notice One logged round, as `finalize` takes it back (rebuilt from `RoundLogged`).
    struct Round {
        bytes32 aggregateHash;
        uint256 counted;
        uint64[] samples;
    }

    uint256 public constant MAX_PARTICIPANTS = 256;

    mapping(address => Node) public nodes;
    mapping(address => mapping(address => bool)) public associated;
    mapping(bytes32 => Job) internal jobs;
    mapping(bytes32 => address[]) internal jobParticipants;
    mapping(bytes32 => mapping(address => Member)) public members;
    mapping(bytes32 => mapping(address => bytes32)) public attestations;
    mapping(bytes32 => mapping(address => uint256)) public funded;
    mapping(address => uint256) public balances;

    bool private transient locked;

    event NodeRegistered(address indexed node, Role role, bytes32 keyHash);
    event DomainAssociated(address indexed network, address indexed domain, bool associated);
    event JobCreated(
        bytes32 indexed jobId,
        address indexed coordinator,
        bytes32 key,
        bytes32 specHash,
        address[] participants,
        uint256 stake,
        uint64 deadline
    );
    event BountyFunded(bytes32 indexed jobId, address indexed funder, uint256 amount);
    event StakeDeposited(bytes32 indexed jobId, address indexed participant, uint256 amount);
    event RoundLogged(
        bytes32 indexed jobId,
        uint32 indexed round,
        bytes32 aggregateHash,
        uint256 counted,
        uint64[] samples
    );
    event ResultAttested(bytes32 indexed jobId, address indexed participant, bytes32 modelHash);
    event JobFinalized(bytes32 indexed jobId, bytes32 modelHash, uint256 pool);
    event Payout(
        bytes32 indexed jobId,
        address indexed participant,
        bool eligible,
        uint256 depositReturned,
        uint256 forfeited,
        uint256 reward,
        uint256 contribution
    );
    event JobClosed(bytes32 indexed jobId, Status status);
    event BountyReclaimed(bytes32 indexed jobId, address indexed funder, uint256 amount);
    event AuditAnchored(address indexed node, uint64 indexed seq, bytes32 headHash);
    event Withdrawn(address indexed account, uint256 amount);

    error NotRegistered(address account);
    error RoleChange(Role registered);
    error BadRole();
    error ZeroHash();
    error NotNetwork();
    error NotDomain(address account);
    error JobExists(bytes32 jobId);
    error UnknownJob(bytes32 jobId);
    error JobNotOpen(bytes32 jobId, Status status);
    error BadParticipants();
    error DuplicateParticipant(address account);
    error DeadlinePassed();
    error NotCoordinator();
    error NotParticipant();
    error AlreadyAttested();
    error AttestationsStarted();
    error StakeMissing();
    error NoStakeRequired();
    error WrongStake(uint256 expected);
    error AlreadyStaked();
    error NoValue();
    error BadRound();
    error RoundsMismatch();
    error NotFinalizable();
    error NothingToReclaim();
    error NothingToWithdraw();
    error TransferFailed();
    error Reentrancy();

    modifier nonReentrant() {
        if (locked) revert Reentrancy();
        locked = true;
        _;
        locked = false;
    }

    // --- nodes ---------------------------------------------------------------------------

    /// @notice Register the caller as a domain or network with the hash of its Ed25519 key.
    /// Registering again with the same role replaces the key hash (key rotation).
    function register(Role role, bytes32 keyHash) external {
        if (role == Role.None) revert BadRole();
        if (keyHash == bytes32(0)) revert ZeroHash();
        Node storage node = nodes[msg.sender];
        if (node.role != Role.None && node.role != role) revert RoleChange(node.role);
        node.role = role;
        node.keyHash = keyHash;
        emit NodeRegistered(msg.sender, role, keyHash);
    }

    /// @notice A network marks a registered domain as associated with it, or no longer.
    function setAssociation(address domain, bool isAssociated) external {
        if (nodes[msg.sender].role != Role.Network) revert NotNetwork();
        if (nodes[domain].role != Role.Domain) revert NotDomain(domain);
        associated[msg.sender][domain] = isAssociated;
        emit DomainAssociated(msg.sender, domain, isAssociated);
    }

    // --- jobs ----------------------------------------------------------------------------

    /// @notice The id of a job: coordinators name their jobs, so nobody can take another's id.
    function jobIdOf(address coordinator, bytes32 key) public pure returns (bytes32) {
        return keccak256(abi.encode(coordinator, key));
    }

    /// @notice Create a job. `msg.value` opens its bounty; `stake` is what each participant
    /// must deposit before attesting (0: none); after `deadline` a majority may finalize.
    function createJob(
        bytes32 key,
        bytes32 specHash,
        address[] calldata participants,
        uint128 stake,
        uint64 deadline
    ) external payable returns (bytes32 jobId) {
        if (nodes[msg.sender].role == Role.None) revert NotRegistered(msg.sender);
        if (specHash == bytes32(0)) revert ZeroHash();
        uint256 count = participants.length;
        if (count == 0 || count > MAX_PARTICIPANTS) revert BadParticipants();
        if (deadline <= block.timestamp) revert DeadlinePassed();
        jobId = jobIdOf(msg.sender, key);
        Job storage job = jobs[jobId];
        if (job.status != Status.None) revert JobExists(jobId);

        for (uint256 i = 0; i < count; ++i) {
            address participant = participants[i];
            if (nodes[participant].role != Role.Domain) revert NotDomain(participant);
            Member storage member = members[jobId][participant];
            if (member.index != 0) revert DuplicateParticipant(participant);
            member.index = uint16(i + 1);
        }
        jobParticipants[jobId] = participants;
        job.coordinator = msg.sender;
        job.status = Status.Open;
        job.stakeRequired = stake != 0;
        job.participantCount = uint16(count);
        job.deadline = deadline;
        job.specHash = specHash;
        // A non-zero start keeps every round's digest update a cheap non-zero rewrite.
        job.roundsDigest = jobId;
        job.stake = stake;
        if (msg.value != 0) _fund(jobId, job);
        emit JobCreated(jobId, msg.sender, key, specHash, participants, stake, deadline);
    }

    /// @notice Add to an open job's bounty (the data scientist escrows it here).
    function fundBounty(bytes32 jobId) external payable {
        Job storage job = _open(jobId);
        if (msg.value == 0) revert NoValue();
        _fund(jobId, job);
    }

    /// @notice A participant deposits the stake the job asks of it.
    function depositStake(bytes32 jobId) external payable {
        Job storage job = _open(jobId);
        if (!job.stakeRequired) revert NoStakeRequired();
        Member storage member = members[jobId][msg.sender];
        if (member.index == 0) revert NotParticipant();
        if (member.staked) revert AlreadyStaked();
        if (msg.value != job.stake) revert WrongStake(job.stake);
        member.staked = true;
        emit StakeDeposited(jobId, msg.sender, msg.value);
    }

    /// @notice The coordinator logs a round: the aggregate's hash, which participants were
    /// counted in it (bit i = participant i), and the samples each counted one reported
    /// (0: counted but did not report). Only a digest is stored; the round lives in the event.
    function logRound(
        bytes32 jobId,
        bytes32 aggregateHash,
        uint256 counted,
        uint64[] calldata samples
    ) external {
        Job storage job = jobs[jobId];
        if (job.coordinator != msg.sender) {
            if (job.status == Status.None) revert UnknownJob(jobId);
            revert NotCoordinator();
        }
        if (job.status != Status.Open) revert JobNotOpen(jobId, job.status);
        if (job.attestations != 0) revert AttestationsStarted();
        uint256 count = job.participantCount;
        if (
            aggregateHash == bytes32(0) ||
            counted == 0 ||
            (count < 256 && counted >> count != 0) ||
            samples.length != _popcount(counted)
        ) revert BadRound();
        uint32 round = job.rounds + 1;
        job.rounds = round;
        job.roundsDigest = _chain(job.roundsDigest, aggregateHash, counted, samples);
        emit RoundLogged(jobId, round, aggregateHash, counted, samples);
    }

    /// @notice A participant attests the hash of the final model it holds, once.
    function attest(bytes32 jobId, bytes32 modelHash) external {
        Job storage job = jobs[jobId];
        if (job.status != Status.Open) {
            if (job.status == Status.None) revert UnknownJob(jobId);
            revert JobNotOpen(jobId, job.status);
        }
        if (modelHash == bytes32(0)) revert ZeroHash();
        Member memory member = members[jobId][msg.sender];
        if (member.index == 0) revert NotParticipant();
        if (job.stakeRequired && !member.staked) revert StakeMissing();
        if (attestations[jobId][msg.sender] != bytes32(0)) revert AlreadyAttested();
        attestations[jobId][msg.sender] = modelHash;
        job.attestations += 1;
        emit ResultAttested(jobId, msg.sender, modelHash);
    }

    /// @notice Settle a job; anyone may call, handing back the rounds as logged (checked
    /// against the stored digest). Unanimous attestations finalize it at once; after the
    /// deadline a strict majority of all participants does, and without one the job fails.
    function finalize(bytes32 jobId, Round[] calldata rounds) external {
        Job storage job = _open(jobId);
        if (rounds.length != job.rounds) revert RoundsMismatch();
        bytes32 digest = jobId;
        for (uint256 r = 0; r < rounds.length; ++r) {
            digest = _chain(digest, rounds[r].aggregateHash, rounds[r].counted, rounds[r].samples);
        }
        if (digest != job.roundsDigest) revert RoundsMismatch();

        address[] storage participants = jobParticipants[jobId];
        (bytes32 modelHash, uint256 votes) = _majority(jobId, participants);
        uint256 count = participants.length;
        bool unanimous = votes == count;
        if (!unanimous && block.timestamp < job.deadline) revert NotFinalizable();
        if (!unanimous && votes * 2 <= count) {
            _close(jobId, job, Status.Failed);
            return;
        }
        _settle(jobId, job, participants, rounds, modelHash);
    }

    /// @notice The coordinator calls a job off before anyone attested (it failed or was
    /// cancelled): deposits go back and funders may reclaim the bounty.
    function cancelJob(bytes32 jobId) external {
        Job storage job = _open(jobId);
        if (job.coordinator != msg.sender) revert NotCoordinator();
        if (job.attestations != 0) revert AttestationsStarted();
        _close(jobId, job, Status.Cancelled);
    }

    /// @notice A funder takes back its share of a pool nobody earned (failed, cancelled, or
    /// finalized without an eligible participant). Credited to its balance.
    function reclaimBounty(bytes32 jobId) external {
        Job storage job = jobs[jobId];
        uint256 amount = funded[jobId][msg.sender];
        if (amount == 0 || job.refundPool == 0) revert NothingToReclaim();
        funded[jobId][msg.sender] = 0;
        uint256 share = (uint256(job.refundPool) * amount) / job.bounty;
        balances[msg.sender] += share;
        emit BountyReclaimed(jobId, msg.sender, share);
    }

    /// @notice Pay out everything credited to the caller.
    function withdraw() external nonReentrant {
        uint256 amount = balances[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        balances[msg.sender] = 0;
        (bool ok, ) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed();
        emit Withdrawn(msg.sender, amount);
    }

    // --- audit anchors ---------------------------------------------------------------------

    /// @notice A registered node anchors the head of its audit-log hash chain.
    function anchor(uint64 seq, bytes32 headHash) external {
        if (nodes[msg.sender].role == Role.None) revert NotRegistered(msg.sender);
        if (headHash == bytes32(0)) revert ZeroHash();
        emit AuditAnchored(msg.sender, seq, headHash);
    }

    // --- reads -----------------------------------------------------------------------------

    function getJob(bytes32 jobId) external view returns (Job memory) {
        return jobs[jobId];
    }

    function participantsOf(bytes32 jobId) external view returns (address[] memory) {
        return jobParticipants[jobId];
    }

    // --- internals -------------------------------------------------------------------------

    function _open(bytes32 jobId) private view returns (Job storage job) {
        job = jobs[jobId];
        if (job.status != Status.Open) {
            if (job.status == Status.None) revert UnknownJob(jobId);
            revert JobNotOpen(jobId, job.status);
        }
    }

    function _fund(bytes32 jobId, Job storage job) private {
        job.bounty += uint128(msg.value);
        funded[jobId][msg.sender] += msg.value;
        emit BountyFunded(jobId, msg.sender, msg.value);
    }

    function _chain(
        bytes32 digest,
        bytes32 aggregateHash,
        uint256 counted,
        uint64[] calldata samples
    ) private pure returns (bytes32) {
        return keccak256(abi.encode(digest, aggregateHash, counted, samples));
    }

    function _popcount(uint256 bits) private pure returns (uint256 n) {
        while (bits != 0) {
            bits &= bits - 1;
            ++n;
        }
    }

    /// @dev Boyer-Moore vote over the attested hashes, then a count of the winner.
    function _majority(
        bytes32 jobId,
        address[] storage participants
    ) private view returns (bytes32 candidate, uint256 votes) {
        uint256 count = participants.length;
        uint256 lead;
        for (uint256 i = 0; i < count; ++i) {
            bytes32 h = attestations[jobId][participants[i]];
            if (h == bytes32(0)) continue;
            if (lead == 0) {
                candidate = h;
                lead = 1;
            } else if (h == candidate) {
                ++lead;
            } else {
                --lead;
            }
        }
        if (candidate == bytes32(0)) return (candidate, 0);
        for (uint256 i = 0; i < count; ++i) {
            if (attestations[jobId][participants[i]] == candidate) ++votes;
        }
    }

    /// @dev What settling a job works out before it pays anyone.
    struct Tally {
        uint256[] contribution;
        bool[] eligible;
        uint256 eligibleCount;
        uint256 totalContribution;
        uint256 pool;
    }

    function _settle(
        bytes32 jobId,
        Job storage job,
        address[] storage participants,
        Round[] calldata rounds,
        bytes32 modelHash
    ) private {
        Tally memory tally = _tally(jobId, job, participants, rounds, modelHash);
        job.status = Status.Finalized;
        job.modelHash = modelHash;
        emit JobFinalized(jobId, modelHash, tally.pool);

        uint256 stake = job.stake;
        uint256 paid;
        uint256 remaining = tally.eligibleCount;
        for (uint256 i = 0; i < participants.length; ++i) {
            address participant = participants[i];
            uint256 deposit = members[jobId][participant].staked ? stake : 0;
            if (!tally.eligible[i]) {
                emit Payout(jobId, participant, false, 0, deposit, 0, tally.contribution[i]);
                continue;
            }
            // Pro rata by contribution (equal split when nothing was counted); the last
            // eligible participant takes the rounding remainder so the pool is paid in full.
            uint256 reward;
            if (--remaining == 0) {
                reward = tally.pool - paid;
            } else if (tally.totalContribution != 0) {
                reward = (tally.pool * tally.contribution[i]) / tally.totalContribution;
            } else {
                reward = tally.pool / tally.eligibleCount;
            }
            paid += reward;
            balances[participant] += deposit + reward;
            nodes[participant].reputation += 1;
            emit Payout(jobId, participant, true, deposit, 0, reward, tally.contribution[i]);
        }
        if (members[jobId][job.coordinator].index == 0) nodes[job.coordinator].reputation += 1;
        if (tally.eligibleCount == 0 && tally.pool != 0) {
            if (job.bounty != 0) {
                job.refundPool = uint128(tally.pool);
            } else {
                // Forfeits with no one to earn them and no funder to return them to.
                balances[job.coordinator] += tally.pool;
            }
        }
    }

    /// @dev Contribution is the sum of samples over the rounds a participant was counted
    /// in; a participant is eligible if it attested the final hash and reported every time.
    function _tally(
        bytes32 jobId,
        Job storage job,
        address[] storage participants,
        Round[] calldata rounds,
        bytes32 modelHash
    ) private view returns (Tally memory tally) {
        uint256 count = participants.length;
        tally.contribution = new uint256[](count);
        tally.eligible = new bool[](count);
        bool[] memory missed = new bool[](count);
        for (uint256 r = 0; r < rounds.length; ++r) {
            uint256 counted = rounds[r].counted;
            uint64[] calldata samples = rounds[r].samples;
            uint256 k;
            for (uint256 i = 0; counted >> i != 0; ++i) {
                if ((counted >> i) & 1 == 0) continue;
                if (samples[k] == 0) missed[i] = true;
                tally.contribution[i] += samples[k];
                ++k;
            }
        }
        tally.pool = job.bounty;
        for (uint256 i = 0; i < count; ++i) {
            address participant = participants[i];
            if (!missed[i] && attestations[jobId][participant] == modelHash) {
                tally.eligible[i] = true;
                ++tally.eligibleCount;
                tally.totalContribution += tally.contribution[i];
            } else if (members[jobId][participant].staked) {
                tally.pool += job.stake;
            }
        }
    }

    /// @dev Failed or cancelled: every deposit goes back, the bounty waits for its funders.
    function _close(bytes32 jobId, Job storage job, Status status) private {
        job.status = status;
        job.refundPool = job.bounty;
        uint256 stake = job.stake;
        if (stake != 0) {
            address[] storage participants = jobParticipants[jobId];
            for (uint256 i = 0; i < participants.length; ++i) {
                if (members[jobId][participants[i]].staked) balances[participants[i]] += stake;
            }
        }
        emit JobClosed(jobId, status);
    }
}
