// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// tGLM, the token of agora's dev networks: OpenZeppelin's standard ERC-20, plus a faucet that
/// mints to anyone who asks. It exists only where tokens are worth nothing.
contract TestToken is ERC20 {
    /// The most one faucet call mints, so a typo cannot overflow someone's balance.
    uint256 public constant FAUCET_LIMIT = 1_000_000 ether;

    constructor() ERC20("Test Golem Network Token", "tGLM") {}

    /// Mints `amount` (at most FAUCET_LIMIT) to `to`.
    function faucet(address to, uint256 amount) external {
        require(amount <= FAUCET_LIMIT, "faucet: amount over limit");
        _mint(to, amount);
    }
}
