// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// Pays many payees in one transaction, from one payer, in any standard ERC-20.
///
/// The payer approves this contract once. `pay` moves the batch's total from the payer to this
/// contract with one `transferFrom`, then one `transfer` to each payee, so each payee costs one
/// balance write and one Transfer log, not an allowance update as well. Nothing stays here between
/// calls: a batch whose amounts do not add up to `total` reverts whole.
contract BatchPayer {
    /// Pays each payee in `packed` from the caller's balance of `token`.
    ///
    /// Each word of `packed` is `amount << 160 | payee`: 32 bytes of calldata a payee, and an
    /// amount below 2^96 token units.
    function pay(address token, uint256 total, bytes32[] calldata packed) external {
        _call(token, abi.encodeWithSelector(0x23b872dd, msg.sender, address(this), total));
        uint256 sum;
        assembly ("memory-safe") {
            // transfer(address,uint256), built once in scratch memory and reused per payee.
            let ptr := mload(0x40)
            mstore(ptr, shl(224, 0xa9059cbb))
            let end := add(packed.offset, shl(5, packed.length))
            for { let at := packed.offset } lt(at, end) { at := add(at, 32) } {
                let word := calldataload(at)
                let amount := shr(160, word)
                mstore(add(ptr, 4), and(word, 0xffffffffffffffffffffffffffffffffffffffff))
                mstore(add(ptr, 36), amount)
                sum := add(sum, amount)
                // A standard token returns true or nothing; anything else, or a revert, fails all.
                let ok := call(gas(), token, 0, ptr, 68, 0, 32)
                if iszero(and(ok, or(iszero(returndatasize()), eq(mload(0), 1)))) {
                    returndatacopy(0, 0, returndatasize())
                    revert(0, returndatasize())
                }
            }
        }
        require(sum == total, "BatchPayer: amounts do not add up to total");
    }

    function _call(address token, bytes memory data) private {
        require(token.code.length > 0, "BatchPayer: token has no code");
        (bool ok, bytes memory ret) = token.call(data);
        require(ok && (ret.length == 0 || abi.decode(ret, (bool))), "BatchPayer: transferFrom failed");
    }
}
