// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

// Test-only: an account that tries to withdraw again from inside the payment it receives.
interface IGridRegistry {
    function fundBounty(bytes32 jobId) external payable;
    function reclaimBounty(bytes32 jobId) external;
    function withdraw() external;
}

contract ReentrantWithdrawer {
    IGridRegistry public immutable registry;
    bool public reentered;
    bool public reentrySucceeded;
    bytes public reentryError;
    uint256 public received;

    constructor(address registryAddress) {
        registry = IGridRegistry(registryAddress);
    }

    function fund(bytes32 jobId) external payable {
        registry.fundBounty{value: msg.value}(jobId);
    }

    function reclaim(bytes32 jobId) external {
        registry.reclaimBounty(jobId);
    }

    function attack() external {
        registry.withdraw();
    }

    receive() external payable {
        received += msg.value;
        if (!reentered) {
            reentered = true;
            (bool ok, bytes memory err) = address(registry).call(
                abi.encodeCall(IGridRegistry.withdraw, ())
            );
            reentrySucceeded = ok;
            reentryError = err;
        }
    }
}
