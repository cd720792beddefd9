/** The agent's version, as in package.json (test/unit/download/user-agent.test.ts keeps them equal). */
export const agentVersion = '0.1.0'

/** Sent with every download request unless the customer's headers set their own. */
export const userAgent = `byoi-agent/${agentVersion}`
